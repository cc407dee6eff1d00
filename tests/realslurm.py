"""A real one-node SLURM for the tests (Debian's slurmctld/slurmd/munge, no systemd).

``slurm_cluster`` (pytest fixture, session scope) installs the Debian packages when
they are missing (``apt-get``, as root), writes a one-node ``slurm.conf`` in a
temporary folder, starts ``munged``, ``slurmctld`` and ``slurmd`` as background
processes, waits until ``sinfo`` says ``idle`` and, whatever happens, stops them by
PID at the end (jobs are cancelled first). It yields a :class:`SlurmCluster`.

The cluster is what a small site without accounting looks like
(``accounting_storage/none``): Snakemake's SLURM executor must be told
``--slurm-status-command squeue`` (README, "Running on a cluster").
``with cluster.accounting():`` turns it into what most sites run for the block: a
slurmdbd on a MariaDB of its own (``slurmdbd mariadb-server`` installed when
missing; slurmctld and slurmd restart, a few seconds each way), account
``snakestream`` for root. Limits are
enforced for real: memory by polling (``jobacct_gather/linux`` + ``OverMemoryKill``:
no cgroups on CI machines), time by slurmctld (``TIMEOUT``). Finished jobs are
written to a job-completion log (``jobcomp/filetxt``) that the tests read: job id,
name, state, CPUs, memory, time limit.

Facts this relies on: /work/shared/reference/slurm-on-one-machine.md. Two quirks:

* The SLURM jobstep plugin drops every ``SLURM_*`` variable (``SLURM_CONF`` too)
  before its inner ``srun``, so the config must also be at ``/etc/slurm/slurm.conf``.
  The fixture links it there for the session (and removes its link afterwards); it
  refuses (skips) if a real config is already there, and a lock file keeps two test
  sessions on one machine from sharing the link.
* The daemons listen on free ports picked at start, so a stale or foreign slurmctld
  on the default ports does not interfere.
"""

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import debian

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "munged"]
# accounting (SlurmCluster.accounting()): slurmdbd on a MariaDB of its own
ACCOUNTING_PACKAGES = ["slurmdbd", "mariadb-server"]
ACCOUNTING_COMMANDS = ["slurmdbd", "mariadbd", "mariadb-install-db", "sacctmgr"]
ETC_CONF = "/etc/slurm/slurm.conf"
LOCK = "/etc/slurm/.snakestream-tests.lock"
TAG = "snakestream-slurm-"  # prefix of our temporary folders (a stale link is ours)
NODE = "localhost"
PARTITION = "debug"
CPUS = 2
MEMORY_MARGIN_MB = 2048  # left to the OS, the test's own Snakemake and other users


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machine_mb():
    with open("/proc/meminfo") as fh:
        kb = int(re.search(r"MemTotal:\s+(\d+)", fh.read()).group(1))
    return kb // 1024


def ensure_packages(packages=PACKAGES, commands=COMMANDS):
    """Install Debian's SLURM and munge when a command is missing (root only)."""
    debian.ensure_packages(packages, commands)


def write_conf(root, real_memory_mb, ports, dbd_port=None):
    """A one-node slurm.conf under ``root`` (limits enforced); accounting through
    slurmdbd on ``dbd_port`` if given, else none."""
    conf = os.path.join(root, "slurm.conf")
    lines = {
        "ClusterName": "snakestream",
        "SlurmctldHost": NODE,
        "SlurmctldPort": ports[0],
        "SlurmdPort": ports[1],
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={root}/munge/munge.socket",
        "MpiDefault": "none",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",  # memory is a consumable: --mem is real
        "DefMemPerCPU": 500,  # else a job without --mem takes the whole node
        "SchedulerType": "sched/backfill",
        # sbatch -> running in ~1 s; pending jobs are looked at every 2 s (default 60 s
        # and 30 s: after a RESUME, jobs would wait that long for a scheduling pass)
        "SchedulerParameters": "batch_sched_delay=0,sched_interval=2,bf_interval=2",
        "MinJobAge": 300,  # finished jobs stay visible to squeue (the plugin's check)
        "KillWait": 2,  # SIGTERM -> SIGKILL of a job past its limit or cancelled
        "InactiveLimit": 0,
        "ReturnToService": 2,
        "SlurmdParameters": "config_overrides",  # the node is what this file says
        "SlurmctldTimeout": 30,
        "SlurmdTimeout": 60,
        "AccountingStorageType": "accounting_storage/none",
        **({"AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": NODE, "AccountingStoragePort": dbd_port,
            # the munge socket for talking to slurmdbd (else the default /run/munge one)
            "AccountingStoragePass": f"{root}/munge/munge.socket"}
           if dbd_port else {}),
        "JobCompType": "jobcomp/filetxt",  # one line per finished job: state, TRES, limit
        "JobCompLoc": f"{root}/jobcomp.log",
        # Without cgroups, slurmd enforces --mem by polling each step's memory.
        "JobAcctGatherType": "jobacct_gather/linux",
        "JobAcctGatherFrequency": "task=1",
        "JobAcctGatherParams": "OverMemoryKill",
        "StateSaveLocation": f"{root}/state",
        "SlurmdSpoolDir": f"{root}/spool",
        "SlurmctldPidFile": f"{root}/slurmctld.pid",
        "SlurmdPidFile": f"{root}/slurmd.pid",
        "SlurmctldLogFile": f"{root}/slurmctld.log",
        "SlurmdLogFile": f"{root}/slurmd.log",
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
    }
    text = "".join(f"{k}={v}\n" for k, v in lines.items())
    text += (f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={real_memory_mb} "
             f"State=UNKNOWN\n"
             f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n")
    with open(conf, "w") as fh:
        fh.write(text)
    return conf


def write_dbd_conf(root, dbd_port, db_port):
    """slurmdbd.conf next to slurm.conf (slurmdbd looks there), storing in MariaDB."""
    path = os.path.join(root, "slurmdbd.conf")
    with open(path, "w") as fh:
        fh.write(f"AuthType=auth/munge\nAuthInfo=socket={root}/munge/munge.socket\n"
                 f"DbdHost={NODE}\nDbdPort={dbd_port}\nSlurmUser=root\n"
                 f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
                 f"StoragePort={db_port}\nStorageUser=root\nStorageLoc=slurm_acct_db\n"
                 f"PidFile={root}/slurmdbd.pid\nLogFile={root}/slurmdbd.log\nDebugLevel=info\n")
    os.chmod(path, 0o600)  # slurmdbd refuses a config others can read
    return path


def _wait_port(port, timeout=60, proc=None, name=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{name} not listening on port {port} after {timeout} s")


def parse_jobcomp(text):
    """Records of a jobcomp/filetxt log: one dict per finished job (``KEY=value`` pairs)."""
    jobs = []
    for line in text.splitlines():
        if line.startswith("JobId="):
            jobs.append(dict(re.findall(r"(\w+)=(\S*)", line)))
    return jobs


def tres(record):
    """{'cpu': '1', 'mem': '420M', ...} of a jobcomp record's Tres field."""
    return dict(kv.split("=", 1) for kv in record.get("Tres", "").split(",") if "=" in kv)


def mem_mb(value):
    """Slurm memory string (``420M``, ``2G``) in MB."""
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", value).groups()
    return float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]


class SlurmCluster:
    """A running one-node SLURM: its folder, config, environment and a few queries."""

    def __init__(self, root, conf, real_memory_mb, ports):
        self.root, self.conf, self.real_memory_mb, self.ports = root, conf, real_memory_mb, ports
        self.node, self.partition, self.cpus = NODE, PARTITION, CPUS
        self.env = dict(os.environ, SLURM_CONF=conf)
        self.procs = {}
        self.with_accounting = False

    def run(self, *cmd, check=True, timeout=60):
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc.stdout

    def node_state(self):
        return self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).strip()

    def queue(self, name=None):
        """[(job id, state, name)] of the jobs slurmctld still knows (incl. recently ended)."""
        args = ["squeue", "-h", "-t", "all", "-o", "%i|%T|%j"] + (["-n", name] if name else [])
        return [tuple(line.split("|", 2)) for line in self.run(*args).splitlines() if line]

    def finished(self):
        """Every job that ended so far (jobcomp log records)."""
        path = os.path.join(self.root, "jobcomp.log")
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return parse_jobcomp(fh.read())

    def log(self, daemon="slurmctld"):
        with open(os.path.join(self.root, f"{daemon}.log"), errors="replace") as fh:
            return fh.read()

    def cancel_all(self, timeout=30):
        """Cancel every job and wait until none runs (slurmstepd processes gone)."""
        self.run("scancel", "--full", "-u", str(os.geteuid()), check=False)
        deadline = time.time() + timeout
        while time.time() < deadline:
            active = [j for j in self.queue() if j[1] in ("PENDING", "RUNNING", "COMPLETING",
                                                          "CONFIGURING", "SUSPENDED")]
            if not active:
                return
            time.sleep(0.5)

    # ---------------------------------------------------------------- daemons
    def start(self, name, cmd):
        out = open(os.path.join(self.root, f"{name}.out"), "ab")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        out.close()

    def wait_idle(self, timeout=60):
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.root}/{name}.out")
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"SLURM node not idle after {timeout} s (state {state!r}); "
                           f"see {self.root}/slurmctld.log")

    def start_slurm(self):
        self.start("slurmctld", ["slurmctld", "-D", "-i", "-f", self.conf])
        self.start("slurmd", ["slurmd", "-D", "-N", NODE, "-f", self.conf])
        self.wait_idle()

    @contextlib.contextmanager
    def accounting(self):
        """The same cluster with accounting (slurmdbd + MariaDB, what most sites run and
        the SLURM plugin's defaults expect) for the ``with`` block; back to none after.

        slurmctld and slurmd restart (a few seconds, no job may run); MariaDB runs
        without grant tables on a free local port, in this cluster's folder.
        """
        ensure_packages(ACCOUNTING_PACKAGES, ACCOUNTING_COMMANDS)
        db = os.path.join(self.root, "db")
        db_port, dbd_port = _free_port(), _free_port()
        try:
            if not os.path.exists(db):
                subprocess.run(["mariadb-install-db", f"--datadir={db}", "--user=root",
                                "--auth-root-authentication-method=normal", "--skip-test-db"],
                               check=True, capture_output=True, timeout=120)
            self.start("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={db}", "--user=root",
                                    f"--socket={self.root}/mariadb.sock", f"--port={db_port}",
                                    "--bind-address=127.0.0.1", "--skip-grant-tables",
                                    f"--pid-file={self.root}/mariadb.pid",
                                    f"--log-error={self.root}/mariadb.err"])
            _wait_port(db_port, proc=self.procs["mariadbd"], name="mariadbd")
            write_dbd_conf(self.root, dbd_port, db_port)
            self.start("slurmdbd", ["slurmdbd", "-D"])
            _wait_port(dbd_port, proc=self.procs["slurmdbd"], name="slurmdbd")
            self.cancel_all()
            self.stop(("slurmd", "slurmctld"))
            write_conf(self.root, self.real_memory_mb, self.ports, dbd_port)
            for args in (["cluster", "snakestream"], ["account", "snakestream"],
                         ["user", "root", "account=snakestream"]):
                self.run("sacctmgr", "-i", "add", *args, check=False)
            self.start_slurm()
            self.with_accounting = True
            yield self
        finally:
            self.cancel_all()
            self.stop(("slurmd", "slurmctld", "slurmdbd", "mariadbd"))
            write_conf(self.root, self.real_memory_mb, self.ports)
            self.with_accounting = False
            self.start_slurm()

    def stop(self, names=("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")):
        """SIGTERM each daemon by PID (slurmd, slurmctld, ..., munged), SIGKILL if it lingers."""
        for name in names:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.contextmanager
def _etc_conf_link(conf):
    """Point /etc/slurm/slurm.conf at ``conf`` for the session (see module doc)."""
    os.makedirs(os.path.dirname(ETC_CONF), exist_ok=True)
    with open(LOCK, "a+") as lock:
        deadline = time.time() + 1800
        while True:  # another test session on this machine holds the link: wait
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise RuntimeError(f"{LOCK} held by another test session for 30 min")
                time.sleep(2)
        try:
            if os.path.lexists(ETC_CONF):
                target = os.readlink(ETC_CONF) if os.path.islink(ETC_CONF) else ""
                if TAG not in target:
                    pytest.skip(f"{ETC_CONF} is a real SLURM config; the SLURM tests do not "
                                "replace it (run them on a machine without SLURM)")
                os.unlink(ETC_CONF)  # a stale link of an earlier, killed session
            os.symlink(conf, ETC_CONF)
            try:
                yield
            finally:
                if os.path.islink(ETC_CONF) and os.readlink(ETC_CONF) == conf:
                    os.unlink(ETC_CONF)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def running_cluster():
    """Install (if needed), configure and start a one-node SLURM; stop it afterwards."""
    ensure_packages()
    root = tempfile.mkdtemp(prefix=TAG)
    os.chmod(root, 0o755)
    for sub in ("state", "spool", "munge"):
        os.makedirs(os.path.join(root, sub), mode=0o755, exist_ok=True)
    real_memory = _machine_mb() - MEMORY_MARGIN_MB
    ports = (_free_port(), _free_port())
    conf = write_conf(root, real_memory, ports)
    key = os.path.join(root, "munge", "munge.key")
    with open(key, "wb") as fh:
        fh.write(os.urandom(1024))
    os.chmod(key, 0o400)
    cluster = SlurmCluster(root, conf, real_memory, ports)
    with _etc_conf_link(conf):
        try:
            m = os.path.join(root, "munge")
            cluster.start("munged", ["munged", "-F", "--force", f"--socket={m}/munge.socket",
                                     f"--key-file={key}", f"--pid-file={m}/munged.pid",
                                     f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"])
            deadline = time.time() + 20
            while not os.path.exists(f"{m}/munge.socket") and time.time() < deadline:
                time.sleep(0.1)
            cluster.start_slurm()
            yield cluster
        finally:
            try:
                if "slurmctld" in cluster.procs:
                    cluster.cancel_all()
            finally:
                cluster.stop()
    if os.environ.get("SNAKESTREAM_KEEP_SLURM_DIR") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node SLURM (see the module doc); stopped after the session."""
    with running_cluster() as cluster:
        yield cluster
