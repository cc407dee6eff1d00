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
import yaml

from realslurm import mem_mb, slurm_cluster, tres  # noqa: F401  (slurm_cluster: fixture)
from snakestream.blockfile import load_block
from snakestream.blocks import read_table
from snakestream.config import load_schema, validate
from snakestream.demo import make_demo
from snakestream.resources import block_mem_mb, block_runtime_min
from test_cluster import SHAPE, _assert_members_one_at_a_time, _config, _zarr_arrays
from workflow import ROOT, write_config

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
def reference(tmp_path_factory):
    """Demo data, the validated config and a local run to compare fields with."""
    root = tmp_path_factory.mktemp("slurm")
    make_demo(root / "data", shape=SHAPE, spacing=(0.8, 0.4, 0.4), seed=5)
    cfg_path = write_config(root / "local.yaml", _config(root / "data", root / "local"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local",
                           "--cores", "2", "--configfile", cfg_path,
                           "--directory", str(root / "work_local")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(cfg_path) as fh:
        cfg = validate(yaml.safe_load(fh), load_schema(os.path.join(ROOT, "config", "schema.yaml")))
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
def run_profile(slurm, reference, profile, name, *extra, env=None):
    """Start the demo through the profile; always stopped afterwards."""
    root = reference["root"]
    cfg_path = write_config(root / f"{name}.yaml", _config(root / "data", root / name))
    args = ["--profile", profile, "--configfile", cfg_path,
            "--directory", str(root / f"work_{name}"), *FAST, *extra]
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
        ours, local = _zarr_arrays(out / name), _zarr_arrays(reference["root"] / "local" / name)
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


def target(bid):
    z, y, x = (part[1:] for part in bid.split("_"))
    return f"align_block:bz={z},by={y},bx={x}"


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
    steps = re.findall(r"launch task StepId=(\d+)\.(\d+)", slurm.log("slurmd"))
    for jobid, members in batches.items():
        job = jobs[jobid]
        assert len(members) <= GROUP and job["Comment"] == "rule_blocks_align_block"
        assert mem_mb(tres(job)["mem"]) == mem, "a batch asks for one block's memory"
        assert int(job["TimeLimit"]) == minutes * len(members), "runtime = sum over the batch"
        # one srun step per block (inside the batch's allocation)
        assert len({s for j, s in steps if j == jobid}) == len(members)
    _assert_members_one_at_a_time(run.out, [[target(b) for b in m] for m in batches.values()])

    rules = defaultdict(int)
    for job in jobs.values():
        rules[re.sub(r"_wildcards_.*", "", job["Comment"])] += 1
    assert rules["rule_global_align"] == 1
    assert rules["rule_gather_slab"] == reference["n_gather"] >= 2
    assert rules["rule_warp_slab"] == reference["n_warp"] >= 2
    assert_same_field(reference, run.out, ("deform.zarr", "aligned.zarr"))
