"""Where the pipeline's time and memory go, and how they grow with the volume.

For each size it generates a demo pair with known truth (snakestream.demo.scene: nuclei-like
blobs in an ellipsoidal tissue mask, a known affine plus smooth deformation, intensity
change, noise), runs the whole workflow with ``snakemake --cores N`` and reports per
stage (global, block table, blocks, gather, warp, pyramid, itk export, other):

* summed CPU time and summed job time of the stage's jobs, and its span (first job
  start to last job end; stages overlap in a run),
* peak resident memory of the largest single job,
* bytes written (size of the stage's outputs on disk);

for the block stage also the CPU inside SimpleITK registration versus everything else
(interpreter start and imports, reading crops, writing the block file, and the jobs of
blocks below the mask threshold): ``overhead_ratio_cpu = (block jobs' CPU - registration
CPU) / registration CPU``; Snakemake's own process CPU; and the TRE (median / 95th
percentile, µm) after the global affine and after the blocks. Per-process numbers come
from ``benchmarks/accounting/sitecustomize.py`` (every Python process of the run records
its CPU, wall time and peak RSS at exit; block jobs also time ``align.run_step``).

Optionally it also runs bigstream's ``alignment_pipeline`` and
``distributed_piecewise_alignment_pipeline`` on the same pair with the same steps,
blocks, fixed mask and ``--cores`` single-threaded Dask workers
(``benchmarks/bigstream_run.py``, a process of its own whose CPU includes the workers)
and reports time and TRE side by side. bigstream 5.0.3 needs zarr 2 and snakestream
zarr 3, so it usually lives in its own environment, given with ``--bigstream-python``
(set up as in bigstream_run.py's docstring); without it the comparison runs when
bigstream imports here, and is otherwise skipped and said so.

Outputs under ``--out`` (default benchmarks/out, not committed): ``pipeline_bench.tsv``
and ``.json`` (one row per size and stage), ``pipeline_bench.png`` (time and memory
against voxel count), ``data/`` (generated pairs, reused when present) and ``runs/``.

Usage::

    .venv/bin/python benchmarks/pipeline_bench.py --quick          # smoke run, ~15 s
    .venv/bin/python benchmarks/pipeline_bench.py                  # 64x256x256, 128x512x512
    .venv/bin/python benchmarks/pipeline_bench.py --sizes 64x256x256 --cores 2
        [--preset fast|talk] [--steps my_block_steps.yaml] [--tag NAME] [--reuse]
        [--keep-runs] [--no-bigstream] [--bigstream-python PATH]
    .venv/bin/python benchmarks/pipeline_bench.py --quick \
        --bigstream-python benchmarks/out/bigstream-venv/bin/python   # with bigstream
"""

import argparse
import copy
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_SIZES = ["64x256x256", "128x512x512"]
QUICK_SIZE = "32x96x96"
SPACING = [0.8, 0.4, 0.4]  # the demo's voxel size (µm), z y x
SEED = 0
# The largest size make_demo renders in memory: it holds ~300 bytes per voxel (float64
# coordinates of every voxel plus the inverse-transform iteration); above this,
# snakestream.demo.large renders slab by slab (256x1024x1024 would need ~80 GB at once).
MAX_DEMO_VOXELS = 64 * 1024 * 1024

# Global steps as config/demo.yaml (rigid then affine at 1.6 µm): the talk's 2 µm scaled.
GLOBAL_STEPS = [
    ["rigid", {"alignment_spacing": 1.6, "shrink_factors": [2, 1], "smooth_sigmas": [3.2, 1.6],
               "initial_condition": "CENTER",
               "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                  "numberOfIterations": 400}}],
    ["affine", {"alignment_spacing": 1.6, "shrink_factors": [2, 1], "smooth_sigmas": [3.2, 1.6],
                "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                   "numberOfIterations": 400}}],
]
# Block steps: the bigstream talk's kind of settings scaled to the demo's voxels. Block
# core 16x48x48 (talk: 24x48x48 at 0.4x0.1625 µm), overlap 0.5; an affine, then a deform
# with control points every 18 voxels in y/x (talk: 3 µm at 0.1625 µm = 18 voxels; here
# 7.2 µm at 0.4 µm), metric C for both, as in the talk.
#   talk: the talk's iterations, affine 800 and deform 200, each on 5 % random samples
#         (the talk used every voxel, bigstream's default; on every voxel the affine
#         alone costs ~60 s a block: dag_scaling.py);
#   fast: affine 200, deform 50 iterations on 2 % (the library default): a quick
#         run; with metric C the affine converges long before 800 iterations and the
#         deform stops on RSGD's gradient tolerance after 20-40 iterations anyway.
def _block_steps(affine_iterations, deform_iterations, deform_sampling):
    return [
        ["affine", {"alignment_spacing": None, "shrink_factors": [1], "smooth_sigmas": [0.4],
                    "metric": "C", "sampling": "RANDOM", "sampling_percentage": 0.05,
                    "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                       "numberOfIterations": affine_iterations}}],
        ["deform", {"control_point_spacing": 7.2, "control_point_levels": [1],
                    "alignment_spacing": None, "shrink_factors": [1], "smooth_sigmas": [0.4],
                    "metric": "C", "sampling_percentage": deform_sampling,
                    "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                       "numberOfIterations": deform_iterations}}],
    ]


PRESETS = {"talk": _block_steps(800, 200, 0.05), "fast": _block_steps(200, 50, 0.02)}
BLOCKSIZE, OVERLAP = [16, 48, 48], 0.5
TIMESPAN = "500/5s"  # Snakemake's job-rate window, as profiles/local
OUTPUT_CHUNKS = [16, 128, 128]
# --quick: a tiny case with short steps, to check the benchmark itself.
QUICK_GLOBAL = [["affine", {"alignment_spacing": 1.6, "shrink_factors": [1],
                            "smooth_sigmas": [1.6], "initial_condition": "CENTER",
                            "optimizer_args": {"numberOfIterations": 50}}]]
QUICK_BLOCKS = [["affine", {"smooth_sigmas": [0.4], "sampling": "RANDOM",
                            "sampling_percentage": 0.05,
                            "optimizer_args": {"numberOfIterations": 20}}],
                ["deform", {"control_point_spacing": 8.0, "smooth_sigmas": [0.4],
                            "sampling_percentage": 0.02,
                            "optimizer_args": {"numberOfIterations": 10}}]]

NO_BIGSTREAM = "not importable here and no --bigstream-python given"
STAGES = ["global", "block table", "blocks", "gather", "warp", "pyramid", "itk export",
          "other"]
# job script (file name stem) -> stage; init_zarr creates deform.zarr and aligned.zarr
# (init_* create empty Zarr arrays); scripts not listed are a stage of their own
# (e.g. pyramid, itk_export)
SCRIPT_STAGE = {"global_align": "global", "block_table": "block table",
                "align_block": "blocks", "gather_slab": "gather", "warp_slab": "warp",
                "init_zarr": "other", "init_image": "other", "block_qc": "other",
                "report": "other", "itk_export": "itk export"}
# Snakemake benchmark files (under <output>/benchmarks/) of each stage's jobs
STAGE_BENCH = {
    "global": ["global_align.tsv"],
    "block table": ["block_table.tsv"],
    "blocks": ["blocks/*/*/*.tsv"],
    "gather": ["gather/slab_*.tsv"],
    "warp": ["warp/slab_*.tsv"],
    "other": ["block_qc/*.tsv", "block_qc.tsv", "report.tsv", "init_*.tsv"],
    "itk export": ["itk_export.tsv"],
    "pyramid": ["pyramid/*.tsv"],
}
# what each stage writes (relative to the output folder)
STAGE_OUTPUTS = {
    "global": ["global"],
    "block table": ["blocks/table.tsv"],
    "blocks": ["blocks/z*/*/*.npz"],
    "gather": ["deform.zarr", "gather"],
    "warp": ["aligned.zarr", "warp"],
    "other": ["blocks/qc.tsv", "blocks/z*/qc.tsv", "report.html"],
    "itk export": ["itk"],
}


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------
def parse_size(text):
    shape = tuple(int(v) for v in text.lower().split("x"))
    if len(shape) != 3 or min(shape) < 8:
        raise SystemExit(f"--sizes: {text!r} is not ZxYxX (e.g. 64x256x256)")
    return shape


def run_measured(cmd, log_path, env=None, cwd=None):
    """Run a command; returns (returncode, wall s, CPU s of it and its children, peak RSS MB).

    The CPU time and peak come from ``wait4`` on the child, so they cover the whole
    process tree it waited for (Snakemake's jobs included), not the machine.
    """
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def disk_bytes(paths):
    total = 0
    for p in paths:
        if os.path.isfile(p):
            total += os.path.getsize(p)
        elif os.path.isdir(p):
            for dirpath, _, files in os.walk(p):
                total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total



def process_totals(recs):
    """Jobs, span, summed job time and CPU, and the largest peak RSS of process records."""
    return {"jobs": len(recs),
            "span_s": round(max(r["end"] for r in recs) - min(r["start"] for r in recs), 2),
            "job_s": round(sum(r["end"] - r["start"] for r in recs), 2),
            "cpu_s": round(sum(r["cpu_s"] for r in recs), 2),
            "peak_mem_mb": round(max(r["peak_mem_mb"] for r in recs), 1),
            "source": "process records"}

def read_bench(path):
    """One Snakemake benchmark TSV -> dict (first repeat), plus its end time (mtime)."""
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        values = fh.readline().rstrip("\n").split("\t")
    row = {}
    for k, v in zip(header, values):
        try:
            row[k] = float(v)
        except ValueError:
            row[k] = float("nan")
    row["end"] = os.path.getmtime(path)
    return row


# --------------------------------------------------------------------------
# Data and config
# --------------------------------------------------------------------------
def ensure_data(shape, data_root):
    """Generate (or reuse) the demo pair of this size; returns (folder, generation record)."""
    folder = Path(data_root) / ("s" + "x".join(map(str, shape)))
    stamp = folder / "generated.json"
    if stamp.exists() and (folder / "truth.npz").exists():
        return folder, json.loads(stamp.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    # snakestream.demo.scene renders the pair in memory (~300 bytes per voxel); bigger sizes
    # are rendered slab by slab (same truth and scene, noise drawn per plane)
    module = "snakestream.demo.scene" if np.prod(shape) <= MAX_DEMO_VOXELS else "snakestream.demo.large"
    cmd = [sys.executable, "-m", module, str(folder), "--shape", *map(str, shape),
           "--spacing", *map(str, SPACING), "--seed", str(SEED)]
    rc, wall, cpu, peak = run_measured(cmd, folder / "generate.log", env=env)
    if rc:
        raise SystemExit(f"demo generation failed, see {folder / 'generate.log'}")
    record = {"generator": module, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
              "peak_mem_mb": round(peak), "bytes": disk_bytes([folder])}
    stamp.write_text(json.dumps(record))
    return folder, record


def make_config(data, out, quick=False, block_steps=None, preset="fast"):
    return {
        "fixed": {"path": str(data / "fix.zarr"), "dataset": "s0", "spacing": SPACING,
                  "mask": {"path": str(data / "fix_mask.zarr"), "dataset": "s0"}},
        "moving": {"path": str(data / "mov.h5"), "dataset": "/ch0", "spacing": None,
                   "mask": None},
        "output": str(out),
        "truth": str(data / "truth.npz"),
        "output_chunks": OUTPUT_CHUNKS,
        "global_steps": copy.deepcopy(QUICK_GLOBAL if quick else GLOBAL_STEPS),
        "blocks": {"blocksize": BLOCKSIZE, "overlap": OVERLAP,
                   "steps": copy.deepcopy(block_steps or (QUICK_BLOCKS if quick else PRESETS[preset]))},
    }


# --------------------------------------------------------------------------
# One pipeline run and its numbers
# --------------------------------------------------------------------------
def run_pipeline(cfg, run_dir, cores, scheduler="greedy", timespan=TIMESPAN, warm_worker=True):
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # every Python process of the run records its CPU time, wall time and peak memory
    # at exit (benchmarks/accounting/sitecustomize.py)
    accounting = run_dir / "processes.jsonl"
    accounting.unlink(missing_ok=True)
    env = dict(os.environ, SNAKESTREAM_BENCH_ACCOUNT=str(accounting),
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks" / "accounting"),
                                           str(ROOT / "src")]))
    if not warm_worker:  # every block job in its own fresh process (cluster-like)
        env["SNAKESTREAM_WARM_WORKER"] = "0"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(run_dir),
           "--cores", str(cores), "--configfile", str(cfg_path), "--quiet", "rules",
           "--scheduler", scheduler, "--max-jobs-per-timespan", timespan]
    rc, wall, cpu, _ = run_measured(cmd, run_dir / "snakemake.log", env=env)
    if rc:
        tail = (run_dir / "snakemake.log").read_text().splitlines()[-30:]
        raise SystemExit(f"snakemake failed (exit {rc}); last lines:\n" + "\n".join(tail))
    return wall, cpu


def block_records(out):
    """Per block file: (job benchmark row, qc) for every block job."""
    from snakestream.fields.blockfile import load_block

    recs = []
    for tsv in glob.glob(str(out / "benchmarks" / "blocks" / "*" / "*" / "*.tsv")):
        rel = Path(tsv).relative_to(out / "benchmarks")
        npz = out / rel.with_suffix(".npz")
        _, qc, _ = load_block(npz)
        recs.append((read_bench(tsv), qc))
    return recs


def slab_json(out, kind):
    rows = []
    for path in glob.glob(str(out / kind / "slab_*.json")):
        with open(path) as fh:
            rows.append(json.load(fh))
    return rows


def process_records(run_dir):
    """Per-process records of a run, grouped by stage (see benchmarks/accounting)."""
    path = run_dir / "processes.jsonl"
    groups = {}
    if not path.exists():
        return groups
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        groups.setdefault(record_stage(rec), []).append(rec)
    return groups


def record_stage(rec):
    """The stage a process record belongs to: by its script's name, or its worker role."""
    role = rec.get("worker_role")
    if role == "worker":  # the warm worker: imports once for the block jobs
        return "blocks"
    if role == "child":  # a forked child of the worker, running one job
        return SCRIPT_STAGE.get(rec.get("rule"), rec.get("rule"))
    name = os.path.basename(rec["argv"][0] if rec["argv"] else "")
    stem = name[:-3].rsplit(".", 1)[-1] if name.endswith(".py") else name
    if name == "__main__.py" and "snakemake" in rec["argv"][0]:
        return "snakemake scheduler"
    return SCRIPT_STAGE.get(stem, stem)


def block_job_records(recs):
    """Block-stage records as ``(per job, worker)``: each job's processes (its own, or
    its client and the worker's child), and the warm worker's own records."""
    per_job, worker = {}, []
    for r in recs:
        if r.get("worker_role") == "worker":
            worker.append(r)
        else:
            key = json.dumps(r.get("wildcards"), sort_keys=True)
            per_job.setdefault(key, []).append(r)
    return list(per_job.values()), worker


def stage_rows(out, total_wall, procs=None):
    """One dict per stage with time, CPU, memory and bytes.

    From the per-process records where there are any (exact CPU time and peak of each
    job's process, interpreter start-up included), else from Snakemake's benchmark
    files (whose ``cpu_time`` is sampled and misses most of a short job).
    """
    procs = procs or {}
    rows = {}
    for stage in STAGES:
        files = [f for pat in STAGE_BENCH[stage]
                 for f in glob.glob(str(out / "benchmarks" / pat))]
        bench = [read_bench(f) for f in files]
        if not bench:
            continue
        start = min(b["end"] - b["s"] for b in bench)
        end = max(b["end"] for b in bench)
        outputs = [p for pat in STAGE_OUTPUTS.get(stage, []) for p in glob.glob(str(out / pat))]
        rows[stage] = {
            "stage": stage, "jobs": len(bench),
            "span_s": round(end - start, 2),
            "job_s": round(sum(b["s"] for b in bench), 2),
            "cpu_s": round(sum(b.get("cpu_time", 0.0) for b in bench), 2),
            "peak_mem_mb": round(max(b.get("max_rss", 0.0) for b in bench), 1),
            "bytes_written": disk_bytes(outputs),
            "source": "snakemake benchmark",
        }
        recs = procs.get(stage)
        if recs:
            rows[stage].update(process_totals(recs))
    # without process records: the jobs' own ru_maxrss where they write it
    for stage, recs in (("gather", slab_json(out, "gather")), ("warp", slab_json(out, "warp"))):
        if stage in rows and recs and rows[stage]["source"] != "process records":
            rows[stage]["peak_mem_mb"] = max(r["peak_mem_mb"] for r in recs)
    blocks = block_records(out)
    if "blocks" in rows and blocks:
        reg = sum(sum(s.get("seconds", 0.0) for s in qc["steps"]) for _, qc in blocks)
        inside = sum(qc.get("seconds", 0.0) for _, qc in blocks)
        read = sum(qc.get("read_seconds", 0.0) for _, qc in blocks)
        job = sum(b["s"] for b, _ in blocks)
        aligned = [qc for _, qc in blocks if qc["status"] != "skipped"]
        skipped_job = sum(b["s"] for b, qc in blocks if qc["status"] == "skipped")
        peaks = [qc["peak_mem_mb"] for _, qc in blocks if "peak_mem_mb" in qc]
        rows["blocks"].update({
            "blocks_aligned": len(aligned), "blocks_skipped": len(blocks) - len(aligned),
            "registration_s": round(reg, 2),
            "read_s": round(read, 2),
            "other_in_job_s": round(inside - reg - read, 2),
            "job_start_imports_write_s": round(job - skipped_job - inside, 2),
            "skipped_jobs_s": round(skipped_job, 2),
            "overhead_ratio": round((job - reg) / reg, 3) if reg else None,
            "registration_per_aligned_block_s": round(reg / max(len(aligned), 1), 2),
            "job_peak_mem_mb_max": max(peaks) if peaks else None,
        })
        if peaks and rows["blocks"]["source"] != "process records":
            rows["blocks"]["peak_mem_mb"] = max(peaks)
    recs = [r for r in procs.get("blocks", []) if "registration_cpu_s" in r]
    if "blocks" in rows and recs:
        # exact per-process numbers: CPU inside registration steps (wrapped run_step)
        # versus everything else in the block stage: each job's processes (start-up,
        # imports, I/O, skipped blocks) and the warm worker's own start-up
        jobs, worker = block_job_records(recs)
        reg_cpu = sum(r["registration_cpu_s"] for r in recs)
        reg_wall = sum(r["registration_wall_s"] for r in recs)
        cpu = sum(r["cpu_s"] for r in recs)
        wall = sum(max(r["end"] for r in job) - min(r["start"] for r in job) for job in jobs)
        aligned = [job for job in jobs if any(r["steps"] for r in job)]
        skipped = [job for job in jobs if not any(r["steps"] for r in job)]
        skipped_cpu = sum(r["cpu_s"] for job in skipped for r in job)
        aligned_cpu = sum(r["cpu_s"] for job in aligned for r in job)
        worker_cpu = sum(r["cpu_s"] for r in worker)
        rows["blocks"].update({
            "jobs": len(jobs),
            "job_s": round(wall, 2),
            "span_s": round(max(r["end"] for job in jobs for r in job)
                            - min(r["start"] for job in jobs for r in job), 2),
            "registration_s": round(reg_wall, 2),
            "registration_cpu_s": round(reg_cpu, 2),
            "overhead_ratio": round((wall - reg_wall) / reg_wall, 3) if reg_wall else None,
            "overhead_ratio_cpu": round((cpu - reg_cpu) / reg_cpu, 3) if reg_cpu else None,
            "overhead_ratio_cpu_aligned_only": round(
                (aligned_cpu + worker_cpu - reg_cpu) / reg_cpu, 3) if reg_cpu else None,
            "skipped_jobs_cpu_s": round(skipped_cpu, 2),
            "cpu_per_skipped_job_s": round(skipped_cpu / max(len(skipped), 1), 3),
            "non_registration_cpu_per_aligned_job_s": round(
                (aligned_cpu - reg_cpu) / max(len(aligned), 1), 3),
            "registration_cpu_per_aligned_block_s": round(reg_cpu / max(len(aligned), 1), 2),
            "warm_worker_cpu_s": round(worker_cpu, 2),
            "warm_worker_peak_mem_mb": round(max((r["peak_mem_mb"] for r in worker),
                                                 default=0.0), 1),
        })
    if "snakemake scheduler" in procs:
        recs = procs["snakemake scheduler"]
        rows["snakemake scheduler"] = {
            "stage": "snakemake scheduler", "jobs": len(recs),
            "cpu_s": round(sum(r["cpu_s"] for r in recs), 2),
            "peak_mem_mb": round(max(r["peak_mem_mb"] for r in recs), 1)}
    for stage, recs in procs.items():  # whole-run jobs the table above does not know
        if stage in rows or stage == "snakemake scheduler":
            continue
        rows[stage] = {"stage": stage, **process_totals(recs)}
    rows["total"] = {"stage": "total", "span_s": round(total_wall, 2)}
    return rows


def stage_tre(data, out):
    """TRE after each stage, via scripts/demo_tre.py (it writes <out>/tre.json)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_tre.py"),
                    str(data / "truth.npz"), str(out)], check=True, env=env,
                   capture_output=True)
    with open(out / "tre.json") as fh:
        return json.load(fh)


# --------------------------------------------------------------------------
# Optional: bigstream on the same pair
# --------------------------------------------------------------------------
def bigstream_available():
    """True when bigstream (with its Dask/ClusterWrap dependencies) imports in this Python."""
    try:
        from bigstream.align import alignment_pipeline  # noqa: F401
        from bigstream.piecewise_align import distributed_piecewise_alignment_pipeline  # noqa: F401
    except Exception:  # not installed, its dependencies are missing, or zarr 3 (it needs 2)
        return False
    return True


def bigstream_python(path=None):
    """The Python to run benchmarks/bigstream_run.py with, or None (comparison skipped).

    ``path`` (``--bigstream-python``) is an environment where bigstream is installed;
    without it, this Python when bigstream imports here.
    """
    if path:
        if not os.access(path, os.X_OK):
            raise SystemExit(f"--bigstream-python: {path} is not an executable")
        return str(path)
    return sys.executable if bigstream_available() else None


def run_bigstream(cfg_path, run_dir, python, workers=2):
    """Time and TRE of bigstream's global + distributed piecewise alignment.

    Runs benchmarks/bigstream_run.py with ``python`` on the run's config (a process of
    its own: bigstream needs zarr 2). Adds the process's wall and CPU time from
    ``wait4`` (the Dask workers included). Returns None without ``python``, a string
    when the run failed.
    """
    if python is None:
        return None
    out, log = run_dir / "bigstream.json", run_dir / "bigstream.log"
    cmd = [python, str(ROOT / "benchmarks" / "bigstream_run.py"), str(cfg_path), str(out),
           "--workers", str(workers), "--tmp", str(run_dir / "bigstream-tmp")]
    # another environment must not see this one's PYTHONPATH
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" or python == sys.executable}
    rc, wall, cpu, peak = run_measured(cmd, log, env=env)
    shutil.rmtree(run_dir / "bigstream-tmp", ignore_errors=True)
    if rc:
        return f"failed (exit {rc}, see {log})"
    res = json.loads(out.read_text())
    res.update(process_wall_s=round(wall, 2), process_cpu_s=round(cpu, 2),
               process_peak_mem_mb=round(peak, 1), python=python)
    return res


# --------------------------------------------------------------------------
# Table, files, plot
# --------------------------------------------------------------------------
COLUMNS = ["size", "preset", "voxels", "stage", "jobs", "span_s", "job_s", "cpu_s",
           "peak_mem_mb", "bytes_written", "registration_s", "registration_cpu_s",
           "overhead_ratio", "overhead_ratio_cpu", "overhead_ratio_cpu_aligned_only",
           "cpu_per_skipped_job_s", "non_registration_cpu_per_aligned_job_s", "read_s",
           "job_start_imports_write_s", "skipped_jobs_s", "blocks_aligned", "blocks_skipped",
           "warm_worker_cpu_s", "warm_worker_peak_mem_mb",
           "registration_per_aligned_block_s", "tre_median", "tre_p95"]


def fmt(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write_outputs(results, out_dir, tag="pipeline_bench"):
    rows = []
    for res in results:
        for stage, r in res["stages"].items():
            row = {"size": res["size"], "preset": res["preset"], "voxels": res["voxels"], **r}
            if stage == "global":
                row.update(tre_median=res["tre"]["global"]["median"],
                           tre_p95=res["tre"]["global"]["p95"])
            if stage == "blocks" and "blocks" in res["tre"]:
                row.update(tre_median=res["tre"]["blocks"]["median"],
                           tre_p95=res["tre"]["blocks"]["p95"])
            if stage == "total":
                row.update(cpu_s=res["cpu_s"], peak_mem_mb=None)
            rows.append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"{tag}.tsv", "w") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            fh.write("\t".join(fmt(row.get(c)) for c in COLUMNS) + "\n")
    with open(out_dir / f"{tag}.json", "w") as fh:
        json.dump(results, fh, indent=1, default=float)
    return rows


def print_table(rows):
    cols = ["size", "stage", "jobs", "span_s", "job_s", "cpu_s", "peak_mem_mb",
            "bytes_written", "registration_cpu_s", "overhead_ratio_cpu", "tre_median",
            "tre_p95"]
    table = [cols] + [[fmt(r.get(c)) if c != "bytes_written" or r.get(c) is None
                       else f"{r[c] / 1e6:.1f} MB" for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def plot(results, path):
    """Wall time and peak memory of each stage against voxel count (log-log)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the TSV/JSON have the numbers)")
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.6))
    vox = np.array([r["voxels"] for r in results], float)
    for stage in ["global", "block table", "blocks", "gather", "warp", "itk export",
                  "snakemake scheduler"]:
        t = [r["stages"].get(stage, {}).get("cpu_s", np.nan) for r in results]
        ax_t.plot(vox, t, "o-", label=f"{stage}")
        if stage != "snakemake scheduler":
            m = [r["stages"].get(stage, {}).get("peak_mem_mb", np.nan) for r in results]
            ax_m.plot(vox, m, "o-", label=stage)
    ax_t.plot(vox, [r["wall_s"] for r in results], "s-", color="black",
              label="whole run, wall (--cores %d)" % results[0]["cores"])
    reg = [r["stages"].get("blocks", {}).get("registration_cpu_s", np.nan) for r in results]
    ax_t.plot(vox, reg, "k--", label="blocks: inside registration")
    if len(vox) > 1:
        ref = results[0]["stages"].get("blocks", {}).get("cpu_s", np.nan)
        ax_t.plot(vox, ref * vox / vox[0], ":", color="grey", label="linear in voxels")
    ax_t.set(xscale="log", yscale="log", xlabel="voxels (fixed image)",
             ylabel="seconds", title="CPU time per stage (summed over its jobs)")
    ax_m.set(xscale="log", yscale="log", xlabel="voxels (fixed image)",
             ylabel="peak RSS of the largest job (MB)", title="memory per job")
    ax_m.axhline(1000, color="grey", ls=":", label="1 GB target (gather, warp)")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------
def bench_size(shape, args, out_dir):
    size = "x".join(map(str, shape))
    print(f"== {size}: generating data", flush=True)
    data, gen = ensure_data(shape, out_dir / "data")
    run_dir = out_dir / "runs" / (size if args.quick or args.steps else f"{size}-{args.preset}")
    if not args.warm_worker:
        run_dir = run_dir.with_name(run_dir.name + "-no-worker")
    saved = run_dir / "result.json"
    if args.reuse and saved.exists():
        print(f"== {size}: reusing {saved}", flush=True)
        res = json.loads(saved.read_text())
        if args.retabulate:  # stage rows again from the run's kept records
            rows = stage_rows(run_dir / "results", res["wall_s"], process_records(run_dir))
            for stage, row in rows.items():  # the big arrays are gone: keep their bytes
                if "bytes_written" in res["stages"].get(stage, {}):
                    row["bytes_written"] = res["stages"][stage]["bytes_written"]
            res["stages"] = rows
            saved.write_text(json.dumps(res, indent=1, default=float))
        return res
    if run_dir.exists():
        shutil.rmtree(run_dir)
    steps = yaml.safe_load(Path(args.steps).read_text()) if args.steps else None
    cfg = make_config(data, run_dir / "results", args.quick, steps, args.preset)
    print(f"== {size}: snakemake --cores {args.cores}", flush=True)
    load = os.getloadavg()[0]  # other work on the machine inflates wall times, not CPU
    wall, cpu = run_pipeline(cfg, run_dir, args.cores, args.scheduler, args.max_jobs_per_timespan,
                             args.warm_worker)
    out = run_dir / "results"
    res = {"size": size, "preset": "quick" if args.quick else (args.steps or args.preset),
           "voxels": int(np.prod(shape)), "cores": args.cores, "scheduler": args.scheduler,
           "max_jobs_per_timespan": args.max_jobs_per_timespan, "warm_worker": args.warm_worker,
           "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "generation": gen,
           "load_1min_before": load, "load_1min_after": os.getloadavg()[0],
           "config": cfg,
           "stages": stage_rows(out, wall, process_records(run_dir)),
           "tre": stage_tre(data, out)}
    if args.bigstream:
        res["bigstream"] = bench_bigstream(run_dir, args)
    print(f"== {size}: {wall:.0f} s wall, {cpu:.0f} s CPU; TRE blocks "
          f"{res['tre'].get('blocks', {}).get('median', float('nan')):.3f} µm", flush=True)
    saved.write_text(json.dumps(res, indent=1, default=float))
    if not args.keep_runs:  # keep the small records, drop the big arrays
        for name in ("deform.zarr", "aligned.zarr", "itk"):
            shutil.rmtree(out / name, ignore_errors=True)
    return res


def bench_bigstream(run_dir, args):
    """bigstream on the run's pair and config with ``--cores`` workers, or why not."""
    python = bigstream_python(args.bigstream_python)
    if python is None:
        print("== bigstream does not import here and no --bigstream-python was given: "
              "comparison skipped", flush=True)
        return NO_BIGSTREAM
    print(f"== bigstream ({python}), {args.cores} workers", flush=True)
    big = run_bigstream(run_dir / "config.yaml", run_dir, python, workers=args.cores)
    if isinstance(big, str):
        print(f"== bigstream {big}", flush=True)
    return big


def _field_cpu(res):
    """snakestream's CPU up to the deformation field (global, block table, blocks, gather)."""
    return sum(res["stages"].get(s, {}).get("cpu_s", 0.0)
               for s in ("global", "block table", "blocks", "gather"))


def compare_bigstream(results):
    """Side-by-side lines per size: time, then TRE (bigstream / snakestream ratios)."""
    lines = []
    for res in results:
        big = res.get("bigstream")
        if big is None:
            continue
        if not isinstance(big, dict):
            lines.append(f"{res['size']}: bigstream {big}; comparison skipped")
            continue
        wall, cpu = res["wall_s"], res["cpu_s"]
        lines.append(
            f"{res['size']}: time  snakestream {wall:.1f} s wall, {cpu:.1f} s CPU (whole run; "
            f"{_field_cpu(res):.1f} s CPU to the field) | bigstream {big['process_wall_s']:.1f}"
            f" s wall, {big['process_cpu_s']:.1f} s CPU (process; global + blocks "
            f"{big['wall_s']:.1f} s) | ratio bigstream/snakestream wall "
            f"{big['process_wall_s'] / wall:.2f}, CPU {big['process_cpu_s'] / cpu:.2f}")
        ours, theirs = res["tre"]["blocks"], big["tre_blocks"]
        lines.append(
            f"{res['size']}: TRE median (p95) snakestream {ours['median']:.3f} "
            f"({ours['p95']:.3f}) µm | bigstream {theirs['median']:.3f} ({theirs['p95']:.3f}) "
            f"µm | ratio bigstream/snakestream {theirs['median'] / ours['median']:.2f}; after "
            f"global {res['tre']['global']['median']:.3f} vs {big['tre_global']['median']:.3f} µm")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=None,
                        help=f"fixed shapes ZxYxX (default {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--tag", default="pipeline_bench",
                        help="name of the table/plot files under --out")
    parser.add_argument("--quick", action="store_true",
                        help=f"one tiny case ({QUICK_SIZE}, short steps): a smoke run")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--scheduler", choices=["greedy", "ilp"], default="greedy",
                        help="Snakemake's job scheduler (greedy, as profiles/*; ilp is "
                             "Snakemake's default when pulp is installed)")
    parser.add_argument("--max-jobs-per-timespan", default=TIMESPAN,
                        help=f"Snakemake's job rate window (default: profiles/local's "
                             f"{TIMESPAN}; Snakemake's own default is 100/1s)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast",
                        help="block step settings (see PRESETS); --steps overrides")
    parser.add_argument("--steps", default=None,
                        help="YAML file with a block step list to use instead of the default")
    parser.add_argument("--no-warm-worker", dest="warm_worker", action="store_false",
                        help="run every block job in a fresh process of its own "
                             "(SNAKESTREAM_WARM_WORKER=0), as on a cluster")
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep deform.zarr/aligned.zarr of each run")
    parser.add_argument("--reuse", action="store_true",
                        help="take a size's numbers from its earlier run (runs/*/result.json)")
    parser.add_argument("--retabulate", action="store_true",
                        help="with --reuse: recompute the stage rows from the run's records")
    parser.add_argument("--no-bigstream", dest="bigstream", action="store_false",
                        help="skip the bigstream comparison even if bigstream is installed")
    parser.add_argument("--bigstream-python", default=None, metavar="PATH",
                        help="Python of an environment with bigstream (e.g. "
                             "benchmarks/out/bigstream-venv/bin/python); default: this "
                             "Python if bigstream imports here, else no comparison")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([QUICK_SIZE] if args.quick else DEFAULT_SIZES)
    out_dir = Path(args.out)
    results = []
    for text in sizes:
        results.append(bench_size(parse_size(text), args, out_dir))
        rows = write_outputs(results, out_dir, args.tag)  # after every size: partial results survive
    print_table(rows)
    for line in compare_bigstream(results):
        print(line)
    png = plot(results, out_dir / f"{args.tag}.png")
    print(f"wrote {out_dir / (args.tag + '.tsv')}, {out_dir / (args.tag + '.json')}"
          + (f", {png}" if png else ""))
    return results


if __name__ == "__main__":
    main()
