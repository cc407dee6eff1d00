"""A warm worker for local runs: one process that has imported what a block job needs
and forks a fresh child for every block job.

A block job's own work (read crops, register, write its file) is ~1–2 s; starting a
fresh Python and importing numpy, SimpleITK, scipy.sparse, zarr and h5py is ~0.4 s of
it (``benchmarks/job_floor.py``; tensorstore, which reads N5 and Zarr crops, adds
~0.04 s and is preloaded too: importing it starts no thread). With the worker, each block is still its own
Snakemake job with its own log, benchmark, retries and output file; the job's process
is a small client (standard library only) that hands its job to the worker over a
Unix socket, and the worker forks a child that runs the job with the client's
stdin/stdout/stderr, working directory and environment. The client relays the child's
exit status, and forwards SIGTERM, SIGINT and SIGHUP to it.

The worker only imports: it never starts a thread or an ITK filter, so forking it is
safe. It stops when told (SIGTERM), or when the process that started it (Snakemake)
is gone. Where no worker is advertised (cluster jobs, ``SNAKESTREAM_WARM_WORKER=0``)
or it cannot be reached, the job runs in its own process as before.

Protocol, one connection per job: the client sends one JSON request
``{"task": "module:function", "job": {...}, "cwd": ..., "env": {...}}`` with its
fds 0, 1, 2 attached (SCM_RIGHTS); the child answers ``{"pid": N}`` when it starts
and ``{"rc": N}`` when the job ends.
"""

import json
import os
import signal
import socket
import sys

ENV_ADDRESS = "SNAKESTREAM_WORKER"  # "<hostname>:<socket path>", set for local jobs
ENV_SWITCH = "SNAKESTREAM_WARM_WORKER"  # "0" turns the worker off
PRELOAD = ("numpy", "SimpleITK", "scipy.sparse", "zarr", "tensorstore", "h5py",
           "snakestream.smk.blockjob")
_MAX_REQUEST = 1 << 20

# What a process is to the worker ("job": runs its job itself; "client", "worker",
# "child") and the job it serves (JSON: rule, wildcards), in its own environment, where
# the block QC and benchmarks/accounting read them.
ROLE_ENV = "SNAKESTREAM_PROCESS_ROLE"
JOB_ENV = "SNAKESTREAM_JOB"


class Job(dict):
    """A rule's job as a mapping with attribute access, like Snakemake's ``snakemake``.

    Keys: ``rule``, ``input`` and ``params`` (mappings), ``output`` and ``log`` (lists),
    ``wildcards`` (mapping), ``threads``. ``job.input.table``, ``job.output[0]``.
    """

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return Job(value) if type(value) is dict else value

    @classmethod
    def of(cls, mapping):
        return mapping if isinstance(mapping, cls) else cls(mapping)


def declare(role, job=None):
    """Record in this process's environment what it is to the worker and its job."""
    os.environ[ROLE_ENV] = role
    if job is not None:
        os.environ[JOB_ENV] = json.dumps({"rule": job.get("rule"),
                                          "wildcards": job.get("wildcards")})


def role(environ=None):
    """What this process is to the worker (None outside block jobs and the worker)."""
    return (os.environ if environ is None else environ).get(ROLE_ENV)


def run_here_or_in_worker(task, job):
    """Run ``task(job)`` in the advertised warm worker, else in this process.

    Returns the job's exit status. Used by rule entry scripts.
    """
    path = advertised()
    if path:
        declare("client", job)
        rc = submit(path, task, job)
        if rc is not None:
            return rc
        print(f"snakestream: no warm worker answers at {path}; running this job in its "
              "own process.", file=sys.stderr, flush=True)
    declare("job", job)
    return run_task(task, job)


def advertise(path):
    """The value of ``SNAKESTREAM_WORKER`` for a worker listening on ``path`` here."""
    return f"{socket.gethostname()}:{path}"


def advertised(environ=None):
    """The worker's socket path if one is advertised for this host, else None."""
    environ = os.environ if environ is None else environ
    host, _, path = environ.get(ENV_ADDRESS, "").partition(":")
    if not path or host != socket.gethostname() or environ.get(ENV_SWITCH) == "0":
        return None
    return path


# ---------------------------------------------------------------- client side


def submit(path, task, job, timeout=60.0):
    """Run ``task(job)`` in a child of the worker at ``path``; return its exit status.

    Returns None when the worker cannot be reached or has not started the job within
    ``timeout`` seconds (the caller then runs the job itself; a child that starts
    later finds the connection closed and does not run it). The child writes to this
    process's stdout/stderr. While it runs, SIGTERM, SIGINT and SIGHUP sent to this
    process are passed on to it.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        request = {"task": task, "job": job, "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        reader = sock.makefile("rb")
        started = _read_message(reader)
        sock.settimeout(None)
    except (OSError, ValueError):
        sock.close()
        return None
    if "pid" not in started:
        sock.close()
        return None
    return _wait_for_child(sock, reader, started["pid"])


def _read_message(reader):
    line = reader.readline(_MAX_REQUEST)
    if not line:
        return {}
    return json.loads(line)


def _wait_for_child(sock, reader, pid):
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        done = _read_message(reader)
    except (OSError, ValueError):
        done = {}
    finally:
        sock.close()
    if "rc" not in done and forwarded:  # stopped on purpose, as a process of its own would be
        return 128 + forwarded[0]
    if "rc" not in done:
        print(f"snakestream: the warm worker's process {pid} for this job ended without "
              "a result (killed or crashed). Fix: see the job's log; rerun with "
              f"{ENV_SWITCH}=0 to run each block job in its own process.",
              file=sys.stderr, flush=True)
        return 1
    return int(done["rc"])


# ---------------------------------------------------------------- worker side


def listen(path):
    """A listening Unix socket at ``path`` (mode 0600); replaces a stale one."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def preload(modules=PRELOAD):
    """Import ``modules`` (the block job's libraries) without running anything."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def serve(path, parent_pid=None, modules=PRELOAD, poll=1.0):
    """Accept jobs on ``path`` and fork a child for each, until SIGTERM or the parent is gone.

    ``parent_pid`` is the process whose end stops the worker (default: our parent).
    Binds before importing, so a client that connects early waits instead of failing.
    """
    declare("worker")
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    sock = listen(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        preload(modules)
        sock.settimeout(poll)
        while _alive(parent_pid):
            _reap()
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            _fork_job(sock, conn)
    finally:
        _reap()
        sock.close()
        if os.path.exists(path):
            os.unlink(path)


def _reap():
    """Collect ended children (waited for, not ignored, so that their CPU time counts
    in this process's, and in Snakemake's, children's usage)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def _fork_job(listener, conn):
    conn.settimeout(10.0)
    try:
        request, fds = _read_request(conn)
    except (OSError, ValueError):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        listener.close()
        os._exit(_run_child(conn, request, fds))
    conn.close()
    for fd in fds:
        os.close(fd)


def _read_request(conn):
    """One request line and the three file descriptors sent with it."""
    data, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 3)
    while data and not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
        more = conn.recv(_MAX_REQUEST)
        if not more:
            break
        data += more
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request comes with stdin, stdout and stderr")
    return json.loads(data), fds


def _run_child(conn, request, fds):
    """In the forked child: take on the client's stdio, cwd and env, run the task."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdout.flush()
    sys.stderr.flush()
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    rc = 1
    try:
        conn.settimeout(None)
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        declare("child", request["job"])
        rc = run_task(request["task"], request["job"])
    except BaseException as err:  # noqa: BLE001 - the child must always answer
        rc = _exit_status(err)
    finally:
        _finish_child()
    try:
        conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
    except OSError:
        pass
    return rc


def _finish_child():
    """Flush output and run exit handlers (the benchmark's accounting is one)."""
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    atexit._run_exitfuncs()


def run_task(task, job):
    """Run ``task`` ("module:function", e.g. "snakestream.smk.blockjob:run") on ``job``.

    Returns the exit status the job would end its own process with.
    """
    import importlib

    module, _, func = task.partition(":")
    if not module or not func:
        raise ValueError(f"a task is 'module:function', not {task!r}")
    try:
        getattr(importlib.import_module(module), func)(job)
    except BaseException as err:  # noqa: BLE001
        return _exit_status(err)
    return 0


def _exit_status(err):
    """The exit status Python would end with on ``err`` (printing its traceback)."""
    if isinstance(err, SystemExit):
        code = err.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    import traceback

    traceback.print_exception(err, file=sys.stderr)
    return 1


def start(log_path, parent_pid=None, wait=10.0):
    """Start a worker in the background; return ``(process, socket path)``.

    The socket lives in a new folder under the system's temporary folder that only
    this user can enter (Unix socket paths are limited to ~100 characters, output
    folders are not); whoever can connect could run the job's code anyway.
    Waits until the worker listens (it binds before importing); raises OSError if
    it does not within ``wait`` seconds.
    """
    import subprocess
    import tempfile
    import time

    folder = tempfile.mkdtemp(prefix="snakestream-worker-")
    path = os.path.join(folder, "socket")
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command(path, parent_pid or os.getpid()),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + wait
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, path)
            raise OSError(f"the warm worker did not start; see {log_path}")
        time.sleep(0.01)
    return proc, path


def stop(proc, path, wait=10.0):
    """Stop a worker started by :func:`start` and remove its socket folder."""
    import shutil
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def main(argv):
    """Serve: ``argv`` is ``[SOCKET, PARENT_PID]`` (see :func:`command`)."""
    serve(argv[0], int(argv[1]) if len(argv) > 1 else None)


def command(path, parent_pid, python=sys.executable):
    """The command line that starts a worker (imported, not run as ``-m``, so that
    ``snakestream.smk.worker`` is one module in it, not two)."""
    return [python, "-c", "import sys; from snakestream.smk.worker import main; main(sys.argv[1:])",
            path, str(parent_pid)]
