"""The SLURM profile on a real one-node SLURM (tests/realslurm.py), faults included.

The cluster has no accounting (no slurmdbd), so the runs use the profile with its
documented one-line switch ``slurm-status-command: squeue`` uncommented. Every run
is the tiny demo of tests/test_cluster.py (24x96x96, few iterations), and every
field must be bit-identical to a local run of the same config.

What SLURM did is read from SLURM itself: the job-completion log (state, CPUs,
memory, time limit of every job), ``squeue`` (the job's comment names its rule),
slurmd's log (one job step per block) and each block's QC (``slurm_job_id``: the job
it ran in). Faults are injected by tests/slurm_faults/sitecustomize.py (test-only,
see its doc) and by the test itself (``scancel``, ``scontrol``, SIGKILL).

Marked ``slurm``: ``pytest -m 'not slurm'`` skips them locally; ``make test`` (CI)
runs them.
"""

import base64
import contextlib
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pytest

from realslurm import mem_mb, tres
from snakestream.fields.blockfile import load_block
from snakestream.grid.blocks import read_table
from snakestream.config import load
from snakestream.smk.resources import block_mem_mb, block_runtime_min
from conftest import (CLUSTER_SHAPE as SHAPE, ROOT, cluster_config, run_snakemake, write_config,
                      zarr_arrays)

pytestmark = pytest.mark.slurm

GROUP = 3  # blocks per batch in the end-to-end run (the profile's default is 20)
# The profile's switch for clusters without accounting (README, "Running on a cluster").
NO_ACCOUNTING_LINE = "# slurm-status-command: squeue"
# Test-only speed-ups: poll every second (the plugin adds 10 s per poll that sees no
# job finish); MinJobAge (300 s) stays above 3x the first interval, as the plugin needs.
FAST = ["--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "1"]
FAULTS_HOOK = os.path.join(ROOT, "tests", "slurm_faults")


# ------------------------------------------------------------------ fixtures ----
@pytest.fixture(scope="module")
def reference(demo_data):
    """Demo data, the validated config and a local run to compare fields with."""
    root = demo_data("slurm", SHAPE, seed=5)
    cfg_path = write_config(root / "local.yaml", cluster_config(root / "data", root / "local"))
    proc = run_snakemake("--profile", "profiles/local", "--cores", "2", "--configfile", cfg_path,
                         "--directory", str(root / "work_local"), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    cfg = load(cfg_path)
    table = read_table(root / "local" / "blocks" / "table.tsv")
    aligned = sorted(table["id"][table["aligned"].astype(bool)])
    assert len(aligned) >= 4, "too few aligned blocks for the fault tests"
    return {"root": root, "cfg": cfg, "blocks": aligned,
            "n_gather": len(glob.glob(str(root / "local" / "gather" / "slab_*.json"))),
            "n_warp": len(glob.glob(str(root / "local" / "warp" / "slab_*.json")))}


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster, left clean after each test: no job, node back in service."""
    try:
        yield slurm_cluster
    finally:
        slurm_cluster.cancel_all()
        slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}",
                          "State=RESUME", check=False)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """profiles/slurm with the documented no-accounting line uncommented (only that)."""
    with open(os.path.join(ROOT, "profiles", "slurm", "config.yaml")) as fh:
        text = fh.read()
    assert text.count(NO_ACCOUNTING_LINE + "\n") == 1, "the profile documents the squeue switch"
    folder = tmp_path_factory.mktemp("profile") / "slurm"
    folder.mkdir()
    (folder / "config.yaml").write_text(text.replace(NO_ACCOUNTING_LINE, NO_ACCOUNTING_LINE[2:]))
    return str(folder)


# ------------------------------------------------------------------- helpers ----
class Run:
    """``snakemake --profile ...`` in the background, output to a file."""

    def __init__(self, args, env, log):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=ROOT,
                                         env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        with open(self.log, errors="replace") as fh:
            return fh.read()

    def run_id(self):
        found = re.search(r"SLURM run ID: (\S+)", self.output())
        return found and found.group(1)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake still running after {timeout} s:\n{self.output()[-4000:]}")

    def stop(self):
        """Snakemake ignores SIGTERM while jobs run: SIGINT, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def check(self, code):
        assert code == 0, f"snakemake failed ({code}):\n{self.output()[-6000:]}"


@contextlib.contextmanager
def run_profile(slurm, reference, profile, name, *extra, env=None, field_only=False, stage=None,
                reuse_global=False):
    """Start the demo through the profile; always stopped afterwards. ``field_only``:
    stop at the displacement field (the gather slabs of deform.zarr; no warp, report);
    ``stage``: that output (relative to the run's output folder) only. ``reuse_global``:
    start from the local run's global affine (test time: the global stage on SLURM is
    the end-to-end test's; these runs are about the block stage)."""
    root = reference["root"]
    if reuse_global:
        shutil.copytree(root / "local" / "global", root / name / "global", copy_function=shutil.copy)
    cfg_path = write_config(root / f"{name}.yaml", cluster_config(root / "data", root / name))
    targets = [str(root / name / "gather" / os.path.basename(slab))
               for slab in glob.glob(str(root / "local" / "gather" / "slab_*.json"))] if field_only else []
    if stage:
        targets = [str(root / name / stage)]
    # --quiet host: the profile's short output without `rules`, so the job descriptions
    # (which blocks a rerun ran) can be read back
    args = [*targets, "--profile", profile, "--configfile", cfg_path,
            "--directory", str(root / f"work_{name}"), "--quiet", "host", *FAST, *extra]
    run = Run(args, env or slurm.env, root / f"{name}.log")
    run.cfg_path, run.out, run.args = cfg_path, root / name, args
    try:
        yield run
    finally:
        run.stop()


def block_qc(out):
    """{block id: qc} of the run's block files."""
    return {os.path.basename(f)[:-4]: load_block(f)[1]
            for f in glob.glob(str(out / "blocks" / "z*" / "y*" / "*.npz"))}


def assert_same_field(reference, out, names=("deform.zarr",)):
    for name in names:
        ours, local = zarr_arrays(out / name), zarr_arrays(reference["root"] / "local" / name)
        assert ours.keys() == local.keys() and ours
        for key in ours:
            assert np.array_equal(ours[key], local[key]), f"{name}/{key} differs from the local run"


def run_jobs(slurm, run_id):
    """{job id: jobcomp record (+ 'Comment' from squeue: rule_<rule>...)} of one run."""
    comments = {}
    for line in slurm.run("squeue", "-h", "-t", "all", "-n", run_id, "-o", "%i|%k").splitlines():
        jobid, comment = line.split("|", 1)
        comments[jobid] = comment
    jobs = {j["JobId"]: j for j in slurm.finished() if j["Name"] == run_id}
    for jobid, job in jobs.items():
        job["Comment"] = comments.get(jobid, "")
    return jobs


def events(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------- tests ----
def test_demo_end_to_end_on_real_slurm(slurm, reference, profile):
    """Every block runs as a job step of a real SLURM batch job asking for 1 CPU, the
    derived memory and the summed runtime; GROUP blocks per batch; same field."""
    with run_profile(slurm, reference, profile, "e2e", "--group-components",
                     f"blocks={GROUP}") as run:
        run.check(run.wait(timeout=400))
        run_id = run.run_id()
    cfg = reference["cfg"]
    mem, minutes = block_mem_mb(cfg), block_runtime_min(cfg)
    jobs = run_jobs(slurm, run_id)
    assert jobs and all(j["JobState"] == "COMPLETED" for j in jobs.values()), jobs
    assert all(tres(j)["cpu"] == "1" for j in jobs.values()), "every job asks for one CPU"

    qcs = block_qc(run.out)
    assert sorted(qcs) == reference["blocks"]
    batches = defaultdict(list)
    for bid, qc in qcs.items():
        assert qc["slurm_job_id"] in jobs, f"block {bid} did not run in a SLURM job of this run"
        batches[qc["slurm_job_id"]].append(bid)
    assert len(batches) == math.ceil(len(qcs) / GROUP)
    slurmd = slurm.log("slurmd")
    launched = {step: t for t, step in re.findall(r"\[([\d:.T-]+)\] launch task StepId=(\d+\.\d+)", slurmd)}
    ended = {step: t for t, step in re.findall(r"\[([\d:.T-]+)\] \[(\d+\.\d+)\] done with job", slurmd)}
    for jobid, members in batches.items():
        job = jobs[jobid]
        assert len(members) <= GROUP and job["Comment"] == "rule_blocks_align_block"
        assert mem_mb(tres(job)["mem"]) == mem, "a batch asks for one block's memory"
        assert int(job["TimeLimit"]) == minutes * len(members), "runtime = sum over the batch"
        # one srun step per block inside the batch's allocation, one after another
        # (slurmd's millisecond times: each step ends before the next is launched)
        steps = sorted((launched[s], ended[s]) for s in launched if s.split(".")[0] == jobid)
        assert len(steps) == len(members)
        for (_, end), (start, _) in zip(steps, steps[1:]):
            assert start >= end, f"steps of batch {jobid} overlapped: {steps}"

    rules = defaultdict(int)
    for job in jobs.values():
        rules[re.sub(r"_wildcards_.*", "", job["Comment"])] += 1
    assert rules["rule_global_align"] == 1
    assert rules["rule_gather_slab"] == reference["n_gather"] >= 2
    assert rules["rule_warp_slab"] == reference["n_warp"] >= 2
    assert_same_field(reference, run.out, ("deform.zarr", "aligned.zarr"))


def _drain(slurm, reason):
    slurm.run("scontrol", "update", f"NodeName={slurm.node}", "State=DRAIN", f"Reason={reason}")


def _resume(slurm):
    slurm.run("scontrol", "update", f"NodeName={slurm.node}", "State=RESUME")


def test_limits_cancel_and_drain_on_real_slurm(slurm, reference, profile, tmp_path):
    """One run, one block per fault (block jobs one per batch here, so each fault hits
    one block): the first block to start outlives its 1-minute limit (TIMEOUT), the
    second holds more memory than its request (killed; the retry asks for twice as
    much), the third is scancel'ed while it runs and the node is drained meanwhile
    (nothing starts until RESUME). Retries finish everything; the field is the same."""
    cfg = reference["cfg"]
    mem, minutes = block_mem_mb(cfg), block_runtime_min(cfg)
    spec = {"events": str(tmp_path / "events.jsonl"),
            "roles": [{"name": "timeout", "sleep_once": 150},
                      # the step (its Snakemake ~150 MB + the block's Python) + 3/4 of the
                      # request: over the request, well under twice it (the retry's)
                      {"name": "memory", "ballast_mb": mem * 3 // 4},
                      {"name": "cancel", "sleep_once": 60}]}
    (tmp_path / "faults.json").write_text(json.dumps(spec))
    env = dict(slurm.env, PYTHONPATH=FAULTS_HOOK, SNAKESTREAM_TEST_FAULTS=str(tmp_path / "faults.json"))
    drain = {}
    with run_profile(slurm, reference, profile, "faults", "--group-components", "blocks=1",
                     # test-only: a block's first attempt may run 1 minute (the smallest)
                     "--set-resources", f"align_block:runtime=1 if attempt < 2 else {minutes} * attempt",
                     env=env, field_only=True, reuse_global=True) as run:
        deadline = time.time() + 420
        while run.proc.poll() is None and time.time() < deadline:
            ev = events(spec["events"])
            roles = json.loads((tmp_path / "roles.json").read_text()) if (tmp_path / "roles.json").exists() else {}
            cancel = [e for e in ev if e["event"] == "sleep" and roles.get(e["block"], {}).get("name") == "cancel"]
            if cancel and not drain:
                _drain(slurm, "snakestream-test")
                drain["start"] = time.time()
                slurm.run("scancel", cancel[0]["job"])
                time.sleep(8)
                drain["queue"] = slurm.queue(run.run_id())
                drain["node"] = slurm.node_state()
                drain["end"] = time.time()
                _resume(slurm)
            time.sleep(0.5)
        code = run.wait(timeout=max(1, deadline - time.time()))
        run.check(code)
        run_id = run.run_id()

    jobs = run_jobs(slurm, run_id)
    ev = events(spec["events"])
    roles = {r["name"]: bid for bid, r in json.loads((tmp_path / "roles.json").read_text()).items()}
    assert set(roles) == {"timeout", "memory", "cancel"}
    qcs = block_qc(run.out)
    assert sorted(qcs) == reference["blocks"], "nothing lost"

    def attempts(bid):
        """SLURM jobs that ran this block, in order (from the block's own start events)."""
        return list(dict.fromkeys(e["job"] for e in ev if e["block"] == bid and e["event"] == "start"))

    def final(bid):
        job = jobs[qcs[bid]["slurm_job_id"]]
        assert job["JobState"] == "COMPLETED"
        return job

    # time limit: killed by SLURM as TIMEOUT after its 1 minute; the retry asks for 2x
    first = jobs[attempts(roles["timeout"])[0]]
    assert first["JobState"] == "TIMEOUT" and first["TimeLimit"] == "1", first
    assert final(roles["timeout"])["TimeLimit"] == str(2 * minutes)
    # memory: killed by SLURM for passing its request; the retry with 2x memory succeeds
    first_id = attempts(roles["memory"])[0]
    assert mem_mb(tres(jobs[first_id])["mem"]) == mem
    assert jobs[first_id]["JobState"] in ("OUT_OF_MEMORY", "FAILED", "CANCELLED"), jobs[first_id]
    assert re.search(rf"StepId={first_id}\.\d+ exceeded memory limit", slurm.log("slurmd")) or \
        re.search(rf"{first_id}.*exceeded memory limit", slurm.log("slurmd")), "killed for memory"
    assert mem_mb(tres(final(roles["memory"]))["mem"]) == 2 * mem
    assert qcs[roles["memory"]]["slurm_job_id"] != first_id
    # scancel of a running job: CANCELLED, then retried and finished
    first = jobs[attempts(roles["cancel"])[0]]
    assert first["JobState"] == "CANCELLED", first
    final(roles["cancel"])
    # drain: jobs waited (pending, nothing started) and finished after RESUME
    assert drain, "the cancel block never started"
    assert drain["node"] in ("drained", "draining"), drain
    assert any(state == "PENDING" for _, state, _ in drain["queue"]), drain
    started = [e["time"] for e in ev if e["event"] == "start"]
    assert not [t for t in started if drain["start"] + 1 < t < drain["end"]], "a job started on a drained node"
    assert [t for t in started if t > drain["end"]], "jobs ran after RESUME"
    assert all(j["JobState"] == "COMPLETED" for bid in qcs for j in [final(bid)])
    assert_same_field(reference, run.out)


def _incomplete(workdir):
    """Paths Snakemake marked incomplete (.snakemake/incomplete/<base64 of the path>)."""
    folder = os.path.join(workdir, ".snakemake", "incomplete")
    found = set()
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(ValueError):
                found.add(base64.urlsafe_b64decode(name).decode())
    return found


def test_main_process_killed_mid_blocks_then_documented_recovery(slurm, reference, profile,
                                                                  tmp_path):
    """kill -9 of the main Snakemake while block batches run on SLURM. The README's
    recovery (scancel --name <run ID>, --unlock, the same command again) keeps every
    block file written before the cancel, including those of batches the killed process
    never saw end, and runs align_block for exactly the missing blocks; same field.

    Batches of 2 here (3 batches on 2 CPUs): the main process is killed as soon as a
    block file appears; its batch jobs go on without it, so the batch that finishes
    next leaves block files that Snakemake's record still marks incomplete; then the
    run's jobs are cancelled while the others are still queued or running."""
    work = str(reference["root"] / "work_killed")
    # Every block's first attempt sleeps 15 s (test-only hook), so a batch takes at least
    # 30 s: the third batch is still queued or running well after the first one ends,
    # whatever the machine's load (reruns skip the sleep).
    spec = {"events": str(tmp_path / "events.jsonl"),
            "blocks": {bid: {"sleep_once": 15} for bid in reference["blocks"]}}
    (tmp_path / "faults.json").write_text(json.dumps(spec))
    env = dict(slurm.env, PYTHONPATH=FAULTS_HOOK, SNAKESTREAM_TEST_FAULTS=str(tmp_path / "faults.json"))
    with run_profile(slurm, reference, profile, "killed", "--group-components", "blocks=2",
                     env=env, field_only=True, reuse_global=True) as run:
        files = {bid: os.path.join(run.out, "blocks", *bid.split("_")[:2], f"{bid}.npz")
                 for bid in reference["blocks"]}
        deadline = time.time() + 240
        while time.time() < deadline and run.proc.poll() is None and \
                not any(os.path.exists(f) for f in files.values()):
            time.sleep(0.1)
        assert run.proc.poll() is None, f"run ended before the kill:\n{run.output()[-3000:]}"
        run.proc.kill()  # SIGKILL: no cleanup, the SLURM jobs keep running
        run.proc.wait(timeout=10)
        first_id = run.run_id()
        # a batch ends on its own while another is still queued or running
        deadline = time.time() + 120
        while time.time() < deadline:
            states = [s for _, s, _ in slurm.queue(first_id)]
            if "COMPLETED" in states and {"RUNNING", "PENDING"} & set(states):
                break
            time.sleep(0.1)
        assert any(s in ("RUNNING", "PENDING") for _, s, _ in slurm.queue(first_id)), \
            "the killed run's jobs still run on SLURM"
    # (1) cancel the killed run's jobs (README), and wait until they are gone
    slurm.run("scancel", "--name", first_id)
    for _ in range(60):
        if not [j for j in slurm.queue(first_id) if j[1] in ("RUNNING", "PENDING", "COMPLETING")]:
            break
        time.sleep(0.5)
    incomplete = _incomplete(work)
    present = {bid: open(f, "rb").read() for bid, f in files.items() if os.path.exists(f)}
    missing = sorted(set(files) - set(present))
    # the killed process never saw these batches end, yet no written block is marked
    # incomplete: each batch's own Snakemake clears a block's mark when the block ends
    assert present and missing, f"kill not mid-stage: present {sorted(present)}"
    assert not {files[bid] for bid in present} & incomplete, "written blocks marked incomplete"
    print(f"after the kill: {len(present)} of {len(files)} block files, missing {missing}")
    # (2) the killed process left its lock: --unlock
    cmd = [sys.executable, "-m", "snakemake", *run.args]
    locked = subprocess.run(cmd, cwd=ROOT, env=slurm.env, capture_output=True, text=True, timeout=120)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    unlock = subprocess.run(cmd + ["--unlock"], cwd=ROOT, env=slurm.env, capture_output=True,
                            text=True, timeout=120)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    # (3) the same command again: align_block runs for exactly the missing blocks
    rerun = Run(run.args, slurm.env, reference["root"] / "killed_rerun.log")
    try:
        rerun.check(rerun.wait(timeout=300))
    finally:
        rerun.stop()
    log = rerun.output()
    rerun_ids = re.findall(r"^\s*output: \S*/blocks/z\d+/y\d+/(z\d+_y\d+_x\d+)\.npz\s*$", log, re.M)
    assert sorted(rerun_ids) == missing, f"rerun aligned {sorted(rerun_ids)}, missing {missing}"
    assert len(re.findall(r"Finished jobid: \S+ \(Rule: align_block\)", log)) == len(missing)
    second = run_jobs(slurm, rerun.run_id())
    qcs = block_qc(run.out)
    assert sorted(qcs) == reference["blocks"], "nothing lost"
    for bid, path in files.items():
        if bid in present:  # written before the kill: kept as it was
            assert open(path, "rb").read() == present[bid], f"block {bid} written again"
        else:  # the rest ran in the rerun's SLURM jobs
            assert qcs[bid]["slurm_job_id"] in second, f"block {bid} not from the rerun"
    assert "rule_global_align" not in {j["Comment"] for j in second.values()}
    assert_same_field(reference, run.out)
    # and nothing is left to do
    again = subprocess.run(cmd + ["-n"], cwd=ROOT, env=slurm.env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, \
        (again.stdout + again.stderr)[-3000:]


def test_profile_defaults_on_slurm_with_accounting(slurm, reference):
    """Most clusters have accounting (slurmdbd): there profiles/slurm works exactly as
    shipped (the plugin's default sacct status check, its account guess). The block
    stage runs; SLURM's accounting has every batch, each block in one."""
    with slurm.accounting():
        assert "accounting_storage/slurmdbd" in slurm.run("scontrol", "show", "config")
        with run_profile(slurm, reference, os.path.join(ROOT, "profiles", "slurm"), "accounting",
                         "--group-components", f"blocks={GROUP}", stage="blocks/qc.tsv",
                         reuse_global=True) as run:
            run.check(run.wait(timeout=300))
            run_id = run.run_id()
        # the shipped profile leaves the plugin's default status check (sacct) on
        assert "\nslurm-status-command" not in open(os.path.join(ROOT, "profiles", "slurm",
                                                                "config.yaml")).read()
        rows = [line.split("|") for line in slurm.run(
            "sacct", "-n", "-X", "-P", "--name", run_id, "-o", "JobID,State").splitlines()]
    # the block batches, each block in one of them, every one COMPLETED on its first
    # attempt (memory requests cover the job step's own Snakemake too)
    assert rows and all(state == "COMPLETED" for _, state in rows), rows
    assert len(rows) == math.ceil(len(reference["blocks"]) / GROUP)
    qcs = block_qc(reference["root"] / "accounting")
    assert sorted(qcs) == reference["blocks"]
    assert {q["slurm_job_id"] for q in qcs.values()} <= {jobid for jobid, _ in rows}
