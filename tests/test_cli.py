"""The ``snakestream`` command: run, progress, which-block and init, from outside the repo.

Every command runs as ``python -m snakestream.smk.cli`` (what the console script calls);
one test installs the console script itself into a throwaway venv.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, demo_config, fast_settings, workflow_env, write_config
from snakestream.config import load
from snakestream.demo.scene import load_truth
from snakestream.fields.transform import transform_points
from snakestream.grid.blocks import read_table
from snakestream.io.volumes import open_volume
from snakestream.qc.metrics import tre
from snakestream.qc.progress import Progress


def cli(*args, cwd, timeout=900):
    """``python -m snakestream.smk.cli ARGS`` in ``cwd``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "snakestream.smk.cli", *args], cwd=cwd,
                          env=workflow_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(demo_data):
    """``snakestream run`` in a folder outside the repository, config paths relative to it."""
    root = demo_data("cli", (24, 96, 96), 3)
    cfg = fast_settings(demo_config("data", "out"))
    write_config(root / "my.yaml", cfg)
    t0 = time.time()
    proc = cli("run", "my.yaml", "--cores", "2", cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"root": root, "proc": proc, "seconds": time.time() - t0,
            "cfg": load(root / "my.yaml"), "truth": load_truth(str(root / "data" / "truth.npz"))}


def test_run_from_outside_the_repository_writes_a_right_result(run):
    root, truth = run["root"], run["truth"]
    assert not str(root).startswith(str(ROOT))
    assert (root / ".snakemake").is_dir(), "the working directory is where the user ran it"
    for name in ("global/affine.mat", "deform.zarr", "aligned.zarr", "report.html",
                 "blocks/table.tsv"):
        assert (root / "out" / name).exists(), name
    affine = np.loadtxt(root / "out" / "global" / "affine.mat")
    pts, target = truth.landmarks_fixed, truth.landmarks_moving
    before = tre(pts, target)["median"]
    after = tre(transform_points(pts, affine), target)["median"]
    assert after < 2.0 and after < before / 4, (before, after)


def test_the_global_log_follows_the_optimizer(run):
    """Each pyramid level and every GLOBAL_LOG_EVERY iterations are in the global log,
    before the step's summary line."""
    from snakestream.register.align import GLOBAL_LOG_EVERY

    lines = (run["root"] / "out" / "logs" / "global_align.log").read_text().splitlines()
    for step in ("rigid", "affine"):
        levels = [i for i, x in enumerate(lines) if x.startswith(f"{step}: pyramid level")]
        iterations = [x for x in lines if x.startswith(f"{step}: level ")]
        summary = next(i for i, x in enumerate(lines) if x.startswith(f"step {step}: "))
        assert len(levels) == 2 and max(levels) < summary, lines
        found = [re.search(r"level (\d) iteration (\d+) metric -?[\d.]", x) for x in iterations]
        assert all(found) and {m.group(1) for m in found} == {"1", "2"}, iterations
        assert all(int(m.group(2)) % GLOBAL_LOG_EVERY == 0 for m in found), iterations


def test_the_local_profile_keeps_the_console_short(run):
    """One 'Finished' line (with its time and progress lines) per job, no job blocks."""
    text = run["proc"].stdout + run["proc"].stderr
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)$", text, re.M)
    n_jobs = int(re.search(r"^total\s+(\d+)$", text, re.M).group(1))
    assert len(finished) == n_jobs and "align_block" in finished
    assert "rule align_block:" not in text and "    output: " not in text
    run_part = text[text.index("Select jobs to execute..."):].splitlines()
    other = [x for x in run_part if not re.match(
        r"\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]$|Finished jobid: |\d+ of \d+ steps \(\d+%\) done$|"
        r"Select jobs to execute\.\.\.$|Execute \d+ jobs\.\.\.$|Complete log|Elapsed time", x)]
    assert len(other) <= 4, other  # (a library warning a rule script prints)


def test_a_failed_run_names_the_logs_with_errors(run, tmp_path):
    for name in ("out", "data"):
        shutil.copytree(run["root"] / name, tmp_path / name)
    (tmp_path / "out" / "blocks" / "qc.tsv").write_text("not a block table\n")  # report fails
    shutil.copy(run["root"] / "my.yaml", tmp_path / "bad.yaml")
    proc = cli("run", "bad.yaml", "--cores", "1", "--forcerun", "report", cwd=tmp_path)
    assert proc.returncode == 1
    hint = [x for x in proc.stderr.splitlines() if x.startswith("snakestream run: ")]
    assert hint == [f"snakestream run: Snakemake failed (status 1); errors in: "
                    f"out/logs/report.log"], proc.stderr[-2000:]


def test_run_passes_snakemake_arguments_and_profiles(run):
    root = run["root"]
    again = cli("run", "my.yaml", "--cores", "1", "-n", "--profile", "local", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    forced = cli("run", "my.yaml", "-n", "--cores", "1", "--forcerun", "report", cwd=root)
    assert forced.returncode == 0 and "report" in forced.stdout + forced.stderr


def test_bad_config_and_usage_are_one_line(run, tmp_path):
    bad = write_config(tmp_path / "bad.yaml", {**demo_config("data", "out"), "colour": 1})
    proc = cli("run", bad, cwd=tmp_path)
    assert proc.returncode == 1 and "colour" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for args in (("progress",), ("frobnicate",), ("which-block", "x.yaml"),
                 ("progress", "x.yaml", "--bogus")):
        usage = cli(*args, cwd=tmp_path)
        assert usage.returncode == 2, (args, usage.stderr)
        assert len(usage.stderr.strip().splitlines()) == 1, usage.stderr


def _counts(text):
    """{'ok': 5, 'fallback': 0, ..., 'left': 0} from the blocks line of `progress`."""
    line = next(x for x in text.splitlines() if x.startswith("blocks:"))
    return {name: int(re.search(rf"\b{name} (\d+)", line).group(1))
            for name in ("ok", "fallback", "empty", "below threshold", "failed", "left")}


def test_progress_of_a_finished_run(run):
    table = read_table(run["root"] / "out" / "blocks" / "table.tsv")
    proc = cli("progress", "my.yaml", cwd=run["root"])
    assert proc.returncode == 0, proc.stderr
    counts = _counts(proc.stdout)
    assert counts["ok"] + counts["fallback"] + counts["empty"] == int(table.aligned.sum())
    assert counts["below threshold"] == int((~table.aligned.astype(bool)).sum()) > 0
    assert counts["failed"] == counts["left"] == 0
    n_slabs = len(glob.glob(str(run["root"] / "out" / "warp" / "slab_*.json")))
    assert f"gather: {n_slabs} of {n_slabs} slabs" in proc.stdout
    assert "ETA 0s" in proc.stdout


def test_progress_of_a_half_finished_run(run, tmp_path):
    """Two block files gone (one with an error in its log), a slab marker gone."""
    shutil.copytree(run["root"] / "out", tmp_path / "out")
    shutil.copytree(run["root"] / "data", tmp_path / "data")
    shutil.copy(run["root"] / "my.yaml", tmp_path / "my.yaml")
    files = sorted(glob.glob(str(tmp_path / "out" / "blocks" / "z*" / "y*" / "*.npz")))
    for path in files[:2]:
        os.remove(path)
    failed = os.path.basename(files[0])[:-4]
    log = files[0].replace("/blocks/", "/logs/blocks/")[:-4] + ".log"
    with open(log, "a") as fh:
        fh.write("Traceback (most recent call last):\nMemoryError\n")
    os.remove(tmp_path / "out" / "warp" / "slab_0.json")
    # completion times: 3 blocks in the last 2 minutes, the run started 20 minutes ago
    now = time.time()
    for i, path in enumerate(files[2:]):
        os.utime(path, (now - 60 * (i + 1),) * 2)
    for path in glob.glob(str(tmp_path / "out" / "logs" / "**" / "*.log"), recursive=True):
        os.utime(path, (now - 1200,) * 2)
    proc = cli("progress", "my.yaml", "--window", "300", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = _counts(proc.stdout)
    table = read_table(tmp_path / "out" / "blocks" / "table.tsv")
    assert counts["ok"] + counts["fallback"] + counts["empty"] == int(table.aligned.sum()) - 2
    assert counts["left"] == 2 and counts["failed"] == 1
    assert f"failed: {failed}" in proc.stdout
    n_done = len(files) - 2  # finished 1, 2, 3, ... minutes ago; 5 minutes of window
    rate = min(n_done, 4) / 5  # blocks per minute (the 5th one is right at the edge: out)
    assert f"rate {rate:.1f} blocks/min" in proc.stdout, proc.stdout
    elapsed = re.search(r"elapsed 20m(\d\d)s", proc.stdout)  # plus the CLI's start-up
    assert elapsed and int(elapsed.group(1)) < 30, proc.stdout
    eta = round(2 / rate * 60)  # seconds, the 2 blocks left
    assert f"ETA {eta // 60}m{eta % 60:02d}s" in proc.stdout, proc.stdout
    n_slabs = len(glob.glob(str(tmp_path / "out" / "gather" / "slab_*.json")))
    assert f"warp: {n_slabs - 1} of {n_slabs} slabs" in proc.stdout


def test_rate_and_eta_of_a_snapshot():
    now = 10_000.0
    progress = Progress(counts={"left": 30}, total=40, failed=[], slabs={}, started=now - 3600,
                        finished_times=[now - s for s in (10, 20, 30, 400, 700)], now=now)
    assert progress.rate(window=600) == pytest.approx(60 * 4 / 600)
    assert progress.eta_seconds(window=600) == pytest.approx(30 / 0.4 * 60)
    assert Progress(counts={"left": 3}, total=3, failed=[], slabs={}, started=now - 10,
                    finished_times=[], now=now).eta_seconds() is None
    young = Progress(counts={"left": 1}, total=3, failed=[], slabs={}, started=now - 60,
                     finished_times=[now - 30, now - 5], now=now)
    assert young.rate(window=600) == pytest.approx(2.0), "the window is cut at the start"


def test_which_block_matches_the_script_and_the_grid(run):
    root, cfg = run["root"], run["cfg"]
    um = [8.0, 20.0, 30.0]
    proc = cli("which-block", "my.yaml", "--um", *map(str, um), cwd=root)
    assert proc.returncode == 0, proc.stderr
    script = subprocess.run([sys.executable, str(ROOT / "scripts" / "which_block.py"),
                             "--configfile", "my.yaml", "--um", *map(str, um)], cwd=root,
                            capture_output=True, text=True, env=workflow_env())
    assert script.returncode == 0 and script.stdout == proc.stdout
    voxel = np.round(np.array(um) / open_volume(str(root / "data" / "fix.zarr"), "s0").spacing)
    owner = (voxel // cfg["blocks"]["blocksize"]).astype(int)
    first = proc.stdout.splitlines()[0].split("\t")
    assert first[0] == "z{:04d}_y{:04d}_x{:04d}".format(*owner) and first[1] == "core"
    outside = cli("which-block", "my.yaml", "--voxel", "0", "0", "100000", cwd=root)
    assert outside.returncode == 1 and "outside" in outside.stderr


def test_init_writes_a_config_that_loads_with_the_files_geometry(tmp_path):
    from test_pyramids import write_ome_pyramid

    rng = np.random.default_rng(0)
    write_ome_pyramid(tmp_path / "fix.ome.zarr", rng.random((20, 64, 48), np.float32),
                      (1.5, 0.3, 0.25))
    write_ome_pyramid(tmp_path / "mov.ome.zarr", rng.random((18, 60, 50), np.float32),
                      (1.2, 0.35, 0.35), version="0.5")
    args = ("init", "pair.yaml", "--fixed", "fix.ome.zarr", "--moving", "mov.ome.zarr")
    which = cli(*args, cwd=tmp_path)  # a pyramid: which level?
    assert which.returncode == 1 and "--fixed-dataset" in which.stderr and "s0" in which.stderr
    assert not (tmp_path / "pair.yaml").exists()
    args += ("--fixed-dataset", "s0", "--moving-dataset", "s0")
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "pair.yaml").read_text()
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) > 20, "commented"
    cfg = load(tmp_path / "pair.yaml")
    assert cfg["fixed"]["spacing"] == pytest.approx([1.5, 0.3, 0.25])
    assert cfg["moving"]["spacing"] == pytest.approx([1.2, 0.35, 0.35])
    assert "[20, 64, 48]" in text and "[18, 60, 50]" in text, "the shapes are noted"
    assert all(b <= n for b, n in zip(cfg["blocks"]["blocksize"], (20, 64, 48)))
    fixed = open_volume(cfg["fixed"]["path"], cfg["fixed"]["dataset"])
    assert fixed.shape == (20, 64, 48)
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert (tmp_path / "pair.yaml").read_text() == text
    assert cli(*args, "--force", cwd=tmp_path).returncode == 0


def test_init_config_runs(run, tmp_path):
    """A config from `init` on the demo pair plans the whole workflow (a dry run)."""
    data = run["root"] / "data"
    proc = cli("init", "demo.yaml", "--fixed", str(data / "fix.zarr"), "--fixed-dataset", "s0",
               "--fixed-mask", str(data / "fix_mask.zarr"), "--fixed-mask-dataset", "s0",
               "--moving", str(data / "mov.h5"), "--moving-dataset", "/ch0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load((tmp_path / "demo.yaml").read_text())
    assert cfg["output"] == "results/demo"
    dry = cli("run", "demo.yaml", "-n", "--cores", "1", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    assert "align_block" in dry.stdout + dry.stderr and "warp_slab" in dry.stdout + dry.stderr


def _throwaway_venv(folder):
    """A venv without pip of its own: this interpreter's packages (pip, the dependencies)
    come in through a .pth file, so only snakestream itself is installed into it."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   capture_output=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)})
    with open(os.path.join(purelib, "_deps_of_the_test_venv.pth"), "w") as fh:
        fh.write("\n".join(site.getsitepackages()) + "\n")
    return folder


def _pip_install(venv, *args):
    """``pip install --no-deps ARGS`` into ``venv``; skips the test if pip cannot (offline)."""
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                          *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": ""})
    if pip.returncode != 0:
        pytest.skip(f"pip cannot install here: {pip.stderr.strip().splitlines()[-1:]}")


def _in_venv(venv, *args, cwd=None):
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": ""})


def test_console_script_of_an_editable_install(tmp_path_factory):
    """`pip install --no-deps -e` gives a `snakestream` command using the checkout."""
    venv = _throwaway_venv(tmp_path_factory.mktemp("venv") / "editable")
    _pip_install(venv, "-e", str(ROOT))
    proc = _in_venv(venv, "snakestream", "--help")
    assert proc.returncode == 0 and "which-block" in proc.stdout
    where = _in_venv(venv, "python", "-c",
                     "from snakestream.config import workflow_root; print(workflow_root())")
    assert where.stdout.strip() == str(ROOT)


def test_a_regular_install_carries_the_workflow(run, tmp_path_factory):
    """`pip install .` (a wheel): Snakefile, rules, scripts, schema and profiles come along."""
    venv = _throwaway_venv(tmp_path_factory.mktemp("venv") / "wheel")
    _pip_install(venv, str(ROOT))
    where = _in_venv(venv, "python", "-c",
                     "from snakestream.config import workflow_root; print(workflow_root())")
    assert where.stdout.strip() == str(venv / "share" / "snakestream"), where.stderr
    for name in ("Snakefile", "rules/blocks.smk", "scripts/align_block.py",
                 "config/schema.yaml", "profiles/slurm/config.yaml"):
        assert (venv / "share" / "snakestream" / name).is_file(), name
    dry = _in_venv(venv, "snakestream", "run", "my.yaml", "-n", "--cores", "1", cwd=run["root"])
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, \
        dry.stderr[-2000:]
