"""A run killed (SIGKILL, whole process tree) in the block stage resumes where it stopped
and ends bit-identical to an uninterrupted run."""
import glob
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import (demo_config, snakemake, start_snakemake, workflow_args, workflow_env,
                      write_config)
from snakestream.io.zarr_store import open_zarr_array

SHAPE = (32, 112, 112)


def _blocks(out):
    return sorted(glob.glob(os.path.join(out, "blocks", "z*", "y*", "*.npz")))


def _start(cfg_path, workdir):
    """The workflow on one core in its own process group (to be killed as a whole)."""
    return start_snakemake(*workflow_args(cfg_path, workdir, cores=1), env=workflow_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)


def _kill_after_blocks(proc, out, n, timeout=300):
    t0 = time.time()
    while len(_blocks(out)) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() - t0 < timeout
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _config(data, out):
    """The demo config with short block steps: this test is about resuming, not accuracy."""
    cfg = demo_config(data / "data", out)
    for _, step in cfg["blocks"]["steps"]:
        step["optimizer_args"]["numberOfIterations"] = 40
    return cfg


@pytest.fixture(scope="module")
def data(demo_data):
    return demo_data("resume", SHAPE, seed=3)


def test_killed_run_resumes_only_unfinished_blocks_and_is_bit_identical(data):
    # uninterrupted reference
    ref_cfg = write_config(data / "ref.yaml", _config(data, data / "ref"))
    assert snakemake(ref_cfg, data / "ref_wd").returncode == 0
    ref_field = open_zarr_array(str(data / "ref" / "deform.zarr"))[...]
    total = len(_blocks(data / "ref"))

    # interrupted run in its own working directory, killed with SIGKILL mid block stage
    out, wd = data / "run", data / "run_wd"
    cfg = write_config(data / "run.yaml", _config(data, out))
    proc = _start(cfg, wd)
    _kill_after_blocks(proc, out, n=total // 3)
    done = {p: os.path.getmtime(p) for p in _blocks(out)}
    assert 0 < len(done) < total
    assert not (out / "gather").exists()

    # the lock left by the killed process is cleared, then the same command again;
    # --rerun-incomplete (set in profiles/local) reruns the one job that was in flight
    # (--cores 1) if it had written its file but was killed before Snakemake noted it
    assert snakemake(cfg, wd, "--unlock").returncode == 0
    proc = snakemake(cfg, wd, "--rerun-incomplete")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = proc.stdout.count("rule align_block:") + proc.stderr.count("rule align_block:")
    assert total - len(done) <= ran <= total - len(done) + 1
    unchanged = [p for p, t in done.items() if os.path.getmtime(p) == t]
    assert len(unchanged) >= len(done) - 1

    field = open_zarr_array(str(out / "deform.zarr"))[...]
    assert field.tobytes() == ref_field.tobytes()
    assert np.array_equal(np.loadtxt(out / "global" / "affine.mat"),
                          np.loadtxt(data / "ref" / "global" / "affine.mat"))
