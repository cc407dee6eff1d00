#!/usr/bin/env python3
"""Stand-in LSF commands for tests: record every call, run jobs locally.

There is no open-source LSF to test against (SLURM runs for real in the tests:
tests/realslurm.py). One file, many names: ``bsub``, ``bjobs``, ``bkill``,
``badmin``, ``lsclusters``, ``bhist`` are symlinks to it; it acts on
``basename(argv[0])``. Put this folder first on PATH and set
``FAKESCHED_DIR`` to an empty folder for the state:

* ``calls.jsonl``   one JSON line per call: tool, argv, cwd, time (and job id)
* ``jobs/<id>.json`` each job: name, state, command, cwd, cpus, log, times, exit code
* ``slots/``         ``FAKESCHED_SLOTS`` lock files (default: CPUs of this host);
  a job holds one slot while it runs, so jobs beyond that wait as PEND.

Submitted jobs run in the background (bsub returns at once, like the real one) and
the commands answer in LSF's formats: ``bsub``: ``Job <id> is submitted to queue
<q>.``; ``bjobs -o 'jobid stat'``: ``<id> <STAT>``; ``bhist -l``: long records
starting ``Job <id>, Job Name <n>, User <u>, Project <p>, Command <c>``, or "No
matching job found" on stderr. An LSF job is not bound to CPUs (LSF binds only with
an affinity[] request). Only Python's standard library is used.
"""

import contextlib
import fcntl
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time

LSF_STATES = {"pending": "PEND", "running": "RUN", "done": "DONE", "failed": "EXIT",
              "cancelled": "EXIT"}
CLUSTER = "fakecluster"


# ----------------------------------------------------------------- state ----
def state_dir():
    path = os.environ.get("FAKESCHED_DIR")
    if not path:
        sys.exit("fakesched: set FAKESCHED_DIR to a folder for the fake scheduler's state")
    for sub in ("jobs", "slots", "scripts"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


@contextlib.contextmanager
def locked(path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record(tool, argv, **extra):
    entry = {"tool": tool, "argv": argv, "cwd": os.getcwd(), "time": time.time(), **extra}
    path = os.path.join(state_dir(), "calls.jsonl")
    with locked(path + ".lock"):
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def new_job_id():
    path = os.path.join(state_dir(), "next_id")
    with locked(path + ".lock"):
        current = int(open(path).read()) if os.path.exists(path) else 1000
        with open(path, "w") as fh:
            fh.write(str(current + 1))
    return str(current)


def job_path(jobid):
    return os.path.join(state_dir(), "jobs", f"{jobid}.json")


def read_job(jobid):
    with open(job_path(jobid)) as fh:
        return json.load(fh)


def write_job(job):
    tmp = job_path(job["id"]) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(job, fh)
    os.replace(tmp, job_path(job["id"]))


def update_job(jobid, **changes):
    """Read-modify-write one job under its lock; returns the new record."""
    with locked(job_path(jobid) + ".lock"):
        job = read_job(jobid)
        job.update(changes)
        write_job(job)
        return job


def all_jobs():
    folder = os.path.join(state_dir(), "jobs")
    jobs = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                with open(os.path.join(folder, name)) as fh:
                    jobs.append(json.load(fh))
    return jobs


def submit(job):
    """Store a new job and start its runner in the background."""
    job.setdefault("state", "pending")
    job["submit_time"] = time.time()
    write_job(job)
    subprocess.Popen([sys.executable, os.path.realpath(__file__), "_run", job["id"]],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


# ---------------------------------------------------------------- runner ----
def acquire_slot(jobid):
    """Hold one of FAKESCHED_SLOTS lock files; returns (slot index, open file)."""
    n = int(os.environ.get("FAKESCHED_SLOTS") or len(os.sched_getaffinity(0)))
    folder = os.path.join(state_dir(), "slots")
    while True:
        if read_job(jobid)["state"] == "cancelled":
            return None, None
        for i in range(n):
            fh = open(os.path.join(folder, f"{i}.lock"), "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return i, fh
            except BlockingIOError:
                fh.close()
        time.sleep(0.1)


def run_job(jobid):
    slot, slot_fh = acquire_slot(jobid)
    if slot_fh is None:
        return
    job = read_job(jobid)
    if job.get("bind_cpus"):
        cpus = sorted(os.sched_getaffinity(0))
        ncpus = max(1, int(job.get("cpus", 1)))
        os.sched_setaffinity(0, {cpus[(slot * ncpus + k) % len(cpus)] for k in range(ncpus)})
    env = dict(os.environ, **job.get("env", {}))
    log = job.get("log") or os.devnull
    if log != os.devnull:
        os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(["bash", "-c", job["command"]], cwd=job.get("cwd") or None,
                                env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        job = update_job(jobid, state="running", start_time=time.time(), pid=proc.pid,
                         slot=slot)
        code = proc.wait()
    with locked(job_path(jobid) + ".lock"):
        job = read_job(jobid)
        if job["state"] != "cancelled":
            job["state"] = "done" if code == 0 else "failed"
        job.update(end_time=time.time(), returncode=code)
        write_job(job)
    slot_fh.close()


def cancel(jobids):
    for jobid in jobids:
        if not os.path.exists(job_path(jobid)):
            continue
        job = update_job(jobid, state="cancelled")
        if job.get("pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job["pid"], signal.SIGTERM)


# ------------------------------------------------------------------- LSF ----
LSF_VALUE_OPTIONS = {"-J", "-o", "-e", "-oo", "-eo", "-env", "-P", "-q", "-W", "-n", "-R",
                     "-cwd", "-G", "-M", "-m", "-sla", "-app", "-u", "-g", "-E", "-Ep",
                     "-We", "-c", "-w", "-i", "-L", "-a", "-gpu", "-U", "-sp"}


def parse_bsub(argv):
    """bsub options as {flag: [values]} and the job command (its last argument)."""
    opts, rest = {}, list(argv)
    command = rest.pop() if rest else ""
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag in LSF_VALUE_OPTIONS and i + 1 < len(rest):
            opts.setdefault(flag, []).append(rest[i + 1])
            i += 2
        else:
            opts.setdefault(flag, []).append(True)
            i += 1
    return opts, command


def bsub(argv):
    opts, command = parse_bsub(argv)
    jobid = new_job_id()
    record("bsub", argv, jobid=jobid)
    first = lambda flag, default=None: opts.get(flag, [default])[0]  # noqa: E731
    out = first("-o") or first("-oo")
    if out:
        out = out.replace("%J", jobid)
    n = int(first("-n", 1))
    submit({"id": jobid, "scheduler": "lsf", "name": first("-J", ""), "command": command,
            "cwd": first("-cwd"), "cpus": n, "log": out, "bind_cpus": False,
            "queue": first("-q", "normal"), "project": first("-P", "default"),
            "env": {"LSB_JOBID": jobid, "LSB_JOBNAME": first("-J", ""),
                    "LSB_DJOB_NUMPROC": str(n), "LSB_MAX_NUM_PROCESSORS": str(n)}})
    print(f"Job <{jobid}> is submitted to queue <{first('-q', 'normal')}>.")


def bjobs(argv):
    record("bjobs", argv)
    pattern = None
    for i, arg in enumerate(argv):
        if arg in ("-J", "-aJ") and i + 1 < len(argv):
            pattern = argv[i + 1]
    for job in all_jobs():
        if job["scheduler"] == "lsf" and (pattern is None or fnmatch.fnmatchcase(job["name"], pattern)):
            print(job["id"], LSF_STATES[job["state"]])


def bkill(argv):
    record("bkill", argv)
    cancel([a for a in argv if a.isdigit()])


def badmin(argv):
    record("badmin", argv)
    root = state_dir()
    confdir, sharedir = os.path.join(root, "lsf", "conf"), os.path.join(root, "lsf", "work")
    params = os.path.join(confdir, "lsbatch", CLUSTER, "configdir", "lsb.params")
    os.makedirs(os.path.dirname(params), exist_ok=True)
    with open(params, "w") as fh:
        fh.write("Begin Parameters\nDEFAULT_QUEUE = normal  # fake\nEnd Parameters\n")
    events = os.path.join(sharedir, CLUSTER, "logdir", "lsb.events")
    os.makedirs(os.path.dirname(events), exist_ok=True)
    open(events, "a").close()
    print("MBD configuration at fake time:")
    print(f"    LSB_SHAREDIR = {sharedir}")
    print(f"    LSF_CONFDIR = {confdir}")
    print("    LSF_UNIT_FOR_LIMITS = MB")


def lsclusters(argv):
    record("lsclusters", argv)
    print("CLUSTER_NAME   STATUS   MASTER_HOST   ADMIN   HOSTS  SERVERS")
    print(f"{CLUSTER}    ok       localhost     lsfadmin   1      1")


def bhist(argv):
    """``bhist -l [-a]`` in LSF's long format: one record per job (this fake's jobs),
    ``Job <id>, User <u>, Project <p>, Command <c>`` first, records separated by a
    dashed line; without jobs LSF's message on stderr and exit status 255."""
    record("bhist", argv)
    jobs = [j for j in all_jobs() if j["scheduler"] == "lsf"]
    if not jobs:
        print("No matching job found", file=sys.stderr)
        sys.exit(255)
    user = os.environ.get("USER", "root")
    for job in jobs:
        submitted = time.strftime("%a %b %d %H:%M:%S", time.localtime(job["submit_time"]))
        print(f"Job <{job['id']}>, Job Name <{job['name']}>, User <{user}>, "
              f"Project <{job.get('project', 'default')}>, Command <{job['command'][:40]}>")
        print(f"{submitted}: Submitted from host <localhost>, to Queue <{job.get('queue', 'normal')}>, "
              f"CWD <{job.get('cwd') or os.getcwd()}>;")
        print("\nSummary of time in seconds spent in various states:")
        print("  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL")
        print("  0        0        1        0        0        0        1")
        print("-" * 78)


TOOLS = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill, "badmin": badmin,
         "lsclusters": lsclusters, "bhist": bhist}


def main(argv):
    if len(argv) == 3 and argv[1] == "_run":  # the background runner of one job
        return run_job(argv[2])
    tool = os.path.basename(argv[0])
    if tool not in TOOLS:
        sys.exit(f"fakesched: unknown tool {tool!r}")
    return TOOLS[tool](argv[1:])


if __name__ == "__main__":
    main(sys.argv)
