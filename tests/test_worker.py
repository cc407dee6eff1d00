"""The warm worker (snakestream.smk.worker): jobs run in its forked children exactly as
they would in their own process: output, exit status, working folder, environment,
signals; and without a worker they run in their own process."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import ROOT
from snakestream.smk import worker

SCRIPTS = os.path.join(ROOT, "src")

TASKS = '''
import json, os, sys, time

def record(job):
    print(job["say"], flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    with open(job["out"], "w") as fh:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                   "x": os.environ.get("SNAKESTREAM_TEST_X")}, fh)

def leave(job):
    sys.exit(job["code"])

def boom(job):
    raise RuntimeError("boom in the task")

def hang(job):
    with open(job["out"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(60)
'''


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """A module of test tasks, importable by clients and by a worker started now."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "worker_test_tasks.py").write_text(TASKS)
    path = os.pathsep.join([str(folder), SCRIPTS])
    monkeypatch.setenv("PYTHONPATH", path)
    return path


@pytest.fixture
def warm(tmp_path, tasks):
    """A running worker (preloading the block job's libraries, as in a run)."""
    proc, path = worker.start(str(tmp_path / "worker.log"))
    yield proc, path
    worker.stop(proc, path)


def _client(task, job, cwd, address=None, extra_env=None, wait=True):
    env = dict(os.environ, SNAKESTREAM_TEST_X="from the client", **(extra_env or {}))
    env.pop(worker.ENV_ADDRESS, None)
    if address:
        env[worker.ENV_ADDRESS] = worker.advertise(address)
    code = ("import json, sys; from snakestream.smk import worker; "
            "sys.exit(worker.run_here_or_in_worker(sys.argv[1], json.loads(sys.argv[2])))")
    cmd = [sys.executable, "-c", code, task, json.dumps(job)]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # a zombie has ended too
    except psutil.NoSuchProcess:
        return True


def test_job_attributes_read_like_snakemakes_object():
    job = worker.Job({"input": {"table": "t.tsv"}, "output": ["b.npz"], "threads": 1,
                      "params": {"fixed": {"path": "f.zarr"}}, "wildcards": {"bz": "0001"}})
    assert job.input.table == "t.tsv" and job.output[0] == "b.npz" and job.threads == 1
    assert job.params.fixed["path"] == "f.zarr" and job.wildcards.bz == "0001"
    assert dict(job.wildcards.items()) == {"bz": "0001"}
    with pytest.raises(AttributeError):
        job.log


def test_worker_is_advertised_only_for_this_host_and_can_be_switched_off():
    here = worker.advertise("/tmp/x/socket")
    assert worker.advertised({worker.ENV_ADDRESS: here}) == "/tmp/x/socket"
    assert worker.advertised({worker.ENV_ADDRESS: "another-node:/tmp/x/socket"}) is None
    assert worker.advertised({worker.ENV_ADDRESS: here, worker.ENV_SWITCH: "0"}) is None
    assert worker.advertised({}) is None


def test_job_runs_in_a_forked_child_with_the_clients_stdio_folder_and_environment(warm, tmp_path):
    proc, path = warm
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    out = tmp_path / "record.json"
    res = _client("worker_test_tasks:record", {"say": "hello from the job", "out": str(out)},
                  cwd=tmp_path, address=path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello from the job"
    assert res.stderr.strip() == "to stderr"
    rec = json.loads(out.read_text())
    assert rec["ppid"] == proc.pid, "the job ran in a child of the worker"
    assert rec["cwd"] == str(tmp_path) and rec["x"] == "from the client"


def test_worker_holds_no_threads_when_it_forks(warm, tmp_path):
    """Forking is safe only from a single-threaded process: the libraries the worker
    preloads must not start threads on import."""
    proc, path = warm
    res = _client("worker_test_tasks:leave", {"code": 0}, cwd=tmp_path, address=path)
    assert res.returncode == 0  # answered: the preload is done
    with open(f"/proc/{proc.pid}/status") as fh:
        threads = int(next(line for line in fh if line.startswith("Threads:")).split()[1])
    assert threads == 1


@pytest.mark.parametrize("task, job, rc, message", [
    ("worker_test_tasks:leave", {"code": 3}, 3, ""),
    ("worker_test_tasks:leave", {"code": "a one-line error"}, 1, "a one-line error"),
    ("worker_test_tasks:boom", {}, 1, "RuntimeError: boom in the task"),
])
def test_exit_status_and_errors_reach_the_client(warm, tmp_path, task, job, rc, message):
    _, path = warm
    res = _client(task, job, cwd=tmp_path, address=path)
    assert res.returncode == rc
    assert message in res.stderr
    # and the same in a process of its own
    own = _client(task, job, cwd=tmp_path)
    assert own.returncode == rc and message in own.stderr


def test_terminating_the_job_terminates_its_child(warm, tmp_path):
    _, path = warm
    pid_file = tmp_path / "child.pid"
    client = _client("worker_test_tasks:hang", {"out": str(pid_file)}, cwd=tmp_path,
                     address=path, wait=False)
    assert _wait_for(lambda: pid_file.exists() and pid_file.read_text())
    child = int(pid_file.read_text())
    client.send_signal(signal.SIGTERM)
    client.wait(10)
    assert _wait_for(lambda: _gone(child)), "the worker's child outlived its job"
    assert client.returncode == 128 + signal.SIGTERM


def test_without_a_worker_the_job_runs_in_its_own_process(tmp_path, tasks):
    out = tmp_path / "record.json"
    stale = tmp_path / "no-such-socket"
    res = _client("worker_test_tasks:record", {"say": "hi", "out": str(out)}, cwd=tmp_path,
                  address=str(stale))
    assert res.returncode == 0
    assert f"no warm worker answers at {stale}; running this job in its own process" in res.stderr
    assert json.loads(out.read_text())["ppid"] == os.getpid(), "ran in the client itself"
    switched_off = _client("worker_test_tasks:record", {"say": "hi", "out": str(out)},
                           cwd=tmp_path, address=str(stale),
                           extra_env={worker.ENV_SWITCH: "0"})
    assert switched_off.returncode == 0 and "no warm worker" not in switched_off.stderr


def test_worker_stops_when_the_process_that_started_it_is_gone(tmp_path, tasks):
    parent = subprocess.Popen(["sleep", "60"])
    proc, path = worker.start(str(tmp_path / "worker.log"), parent_pid=parent.pid)
    try:
        assert proc.poll() is None
        parent.kill()
        parent.wait()
        proc.wait(15)
        assert not os.path.exists(path), "the worker removes its socket"
    finally:
        worker.stop(proc, path)
    assert not os.path.exists(os.path.dirname(path))


def test_stop_ends_the_worker_and_removes_its_folder(warm):
    proc, path = warm
    worker.stop(proc, path)
    assert proc.poll() is not None and not os.path.exists(os.path.dirname(path))
