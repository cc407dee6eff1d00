"""How the workflow scales to tens of thousands of blocks, and what a block job costs besides registration.

Part 1, DAG build: for synthetic pairs of 1,000, 10,000 and 50,000 blocks (24x48x48
blocks, config/config.yaml's settings; Zarr arrays with metadata only, no chunk is
ever written: the layout reads metadata only) it times ``snakemake -n`` (parse +
DAG + job statistics, ``--quiet rules``: what every run pays before the first
submission) and records the process's peak RSS, once with ``--profile
profiles/local`` and once with ``--profile profiles/slurm`` (block batches: job
groups of 20, counted from the full job listing at the smallest size).

Part 2, per-block overhead: a generated pair at the talk's voxel size (0.4 x
0.1625 x 0.1625 µm), K blocks of 24x48x48 with the talk's block steps, run locally
on one core. For each block it takes the time inside registration (the steps'
own timers in the block file), the block job's wall time (Snakemake benchmark:
interpreter start, imports, reading crops, registration, writing) and the span of
the whole block phase (Snakemake's scheduling between jobs included). It also
times the start of a spawned cluster-side Snakemake (parse + DAG for one block
job, what each LSF batch pays once and each SLURM batch member pays once).

    overhead per block, local   = (block phase span - sum of registration) / K
    overhead per block, LSF     = local + spawned start / batch size
    overhead per block, SLURM   = local + spawned start * (1 + 1 / batch size)

Usage::

    .venv/bin/python benchmarks/dag_scaling.py [--sizes 1000 10000 50000]
        [--blocks 4] [--skip-dag] [--skip-overhead] [--out benchmarks/out]

Prints a table and writes ``dag_scaling.json`` and ``dag_scaling.md`` under --out.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from snakestream.fields.blockfile import load_block  # noqa: E402
from snakestream.grid.blocks import block_relpath  # noqa: E402

BLOCKSIZE = (24, 48, 48)
TALK_SPACING = (0.4, 0.1625, 0.1625)
BATCH = 20  # the cluster profiles' group-components


def talk_config():
    with open(ROOT / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def run_measured(cmd, cwd=ROOT, env=None):
    """(seconds, peak RSS in MB of the process, stdout+stderr) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{out[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, out


def snakemake_cmd(*args):
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *map(str, args)]


# ------------------------------------------------------------- DAG build ----
def grid_for(n_blocks):
    """A z,y,x block grid with about n_blocks blocks (z about a quarter of y, x)."""
    gz = max(1, round((n_blocks / 16) ** (1 / 3)))
    gy = gx = max(1, round((n_blocks / gz) ** 0.5))
    return gz, gy, gx


def synthetic_pair(folder, n_blocks):
    """Fixed/moving Zarr arrays sized for ~n_blocks blocks; metadata only."""
    import zarr

    shape = tuple(g * b for g, b in zip(grid_for(n_blocks), BLOCKSIZE))
    for name in ("fix", "mov"):
        group = zarr.open_group(str(folder / f"{name}.zarr"), mode="w", zarr_format=2)
        array = group.create_array("s0", shape=shape, chunks=(64, 256, 256), dtype="uint16")
        array.attrs["spacing"] = list(TALK_SPACING)
    cfg = talk_config()
    cfg["fixed"] = {"path": str(folder / "fix.zarr"), "dataset": "s0", "spacing": None, "mask": None}
    cfg["moving"] = {"path": str(folder / "mov.zarr"), "dataset": "s0", "spacing": None,
                     "mask": None}
    cfg["output"] = str(folder / "results")
    path = folder / "config.yaml"
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return path, shape


def count_jobs(out):
    """(align_block jobs, all jobs, block batches) from a dry run's output."""
    blocks = re.search(r"^align_block\s+(\d+)", out, re.M)
    total = re.search(r"^total\s+(\d+)", out, re.M)
    return (int(blocks.group(1)) if blocks else 0, int(total.group(1)) if total else 0,
            len(re.findall(r"Group job blocks", out)))


def dag_scaling(sizes, out):
    rows = []
    for n in sorted(sizes):
        folder = out / f"dag_{n}"
        folder.mkdir(parents=True, exist_ok=True)
        cfg, shape = synthetic_pair(folder, n)
        for profile in ("local", "slurm"):
            work = folder / f"work_{profile}"
            args = ["--profile", f"profiles/{profile}", "--configfile", cfg, "-d", work, "-n",
                    *(["--cores", "2"] if profile == "local" else [])]
            # timed: parse + DAG + job stats, without printing every job's details
            seconds, rss, text = run_measured(snakemake_cmd(*args, "--quiet", "rules"))
            blocks, jobs, _ = count_jobs(text)
            batches = None
            if profile == "slurm" and n == min(sizes):  # the batches, from the job listing
                batches = count_jobs(run_measured(snakemake_cmd(*args))[2])[2]
            rows.append({"target_blocks": n, "blocks": blocks, "jobs": jobs, "shape": shape,
                         "profile": profile, "batches": batches,
                         "seconds": round(seconds, 1), "peak_rss_mb": round(rss)})
            print(f"  dry run {blocks:>6} blocks ({profile:>5}): {seconds:6.1f} s, "
                  f"{rss:6.0f} MB peak, {jobs} jobs" +
                  (f", {batches} batches" if batches is not None else ""), flush=True)
    return rows


# ------------------------------------------------------ per-block overhead ----
def overhead(n_blocks, out):
    from snakestream.demo.scene import make_demo

    folder = out / "overhead"
    data = folder / "data"
    if not (data / "truth.npz").exists():
        make_demo(data, shape=(72, 144, 144), spacing=TALK_SPACING, seed=0)
    cfg = talk_config()
    cfg["fixed"] = {"path": str(data / "fix.zarr"), "dataset": "s0", "spacing": None, "mask": None}
    cfg["moving"] = {"path": str(data / "mov.h5"), "dataset": "/ch0", "spacing": None,
                     "mask": None}
    cfg["output"] = str(folder / "results")
    cfg["threads"] = {"global": 1}
    cfg_path = folder / "config.yaml"
    with open(cfg_path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    # the middle z row: full 48-voxel-deep regions, as in a large volume
    ids = [f"z0001_y{y:04d}_x{x:04d}" for y, x in ((1, 1), (1, 0), (0, 1), (1, 2), (2, 1),
                                                    (0, 0), (2, 2), (0, 2), (2, 0))][:n_blocks]
    targets = [str(folder / "results" / "blocks" / block_relpath(b)) for b in ids]
    work = folder / "work"
    for stale in (work, folder / "results"):
        shutil.rmtree(stale, ignore_errors=True)
    local = ["--profile", "profiles/local", "--cores", "1", "--configfile", cfg_path, "-d", work]
    # global stage and block table first, so the block phase is measured alone
    # (targets go before the options: --configfile and --forcerun take several values)
    run_measured(snakemake_cmd(folder / "results" / "blocks" / "table.tsv",
                               folder / "results" / "global" / "affine.mat", *local))
    wall, _, _ = run_measured(snakemake_cmd(*targets, *local))
    per_block = []
    spans = []
    for bid, target in zip(ids, targets):
        _, qc, _ = load_block(target)
        rel = block_relpath(bid, ext="")[:-1]
        bench = folder / "results" / "benchmarks" / "blocks" / f"{rel}.tsv"
        with open(bench) as fh:
            job_seconds = float(fh.read().splitlines()[1].split("\t")[0])
        log = folder / "results" / "logs" / "blocks" / f"{rel}.log"
        end = os.path.getmtime(log)
        spans.append((end - job_seconds, end))
        registration = sum(float(s.get("seconds") or 0) for s in qc["steps"])
        per_block.append({"id": bid, "status": qc["status"], "registration_s": round(registration, 2),
                          "block_read_and_register_s": qc.get("seconds"),
                          "job_wall_s": job_seconds})
    phase = max(e for _, e in spans) - min(s for s, _ in spans)
    registration = sum(b["registration_s"] for b in per_block)
    local = (phase - registration) / len(per_block)
    # a spawned cluster-side Snakemake: parse + DAG for one block job (dry run)
    starts = []
    for _ in range(3):
        seconds, _, _ = run_measured(snakemake_cmd(
            targets[0], "--cores", "1", "--configfile", cfg_path, "-d", work,
            "--allowed-rules", "align_block", "--force", "-n", "--quiet", "all"))
        starts.append(seconds)
    start = float(np.median(starts))
    mean_reg = registration / len(per_block)
    result = {
        "blocks": per_block, "block_phase_s": round(phase, 1), "snakemake_wall_s": round(wall, 1),
        "registration_total_s": round(registration, 1), "mean_registration_s": round(mean_reg, 1),
        "overhead_local_s": round(local, 2), "spawned_start_s": round(start, 2),
        "batch": BATCH,
        "overhead_lsf_s": round(local + start / BATCH, 2),
        "overhead_slurm_s": round(local + start * (1 + 1 / BATCH), 2),
    }
    for key in ("local", "lsf", "slurm"):
        result[f"ratio_{key}"] = round(result[f"overhead_{key}_s"] / mean_reg, 4)
    return result


def write_report(out, dag_rows, over):
    lines = ["# DAG build and per-block overhead", ""]
    if dag_rows:
        lines += ["| blocks | jobs | profile | batches | dry run (s) | peak RSS (MB) |",
                  "|---:|---:|---|---:|---:|---:|"]
        lines += [f"| {r['blocks']} | {r['jobs']} | {r['profile']} | {r['batches'] or ''} | "
                  f"{r['seconds']} | {r['peak_rss_mb']} |" for r in dag_rows]
        lines.append("")
    if over:
        lines += [f"Per-block overhead, {len(over['blocks'])} blocks of 24x48x48 with the talk's "
                  f"settings, one core: mean registration {over['mean_registration_s']} s per block.",
                  "", "| where | overhead per block (s) | ratio to registration |",
                  "|---|---:|---:|"]
        for key, label in (("local", "local run (job start + imports + I/O + scheduling)"),
                           ("lsf", f"LSF, batches of {BATCH}"),
                           ("slurm", f"SLURM, batches of {BATCH} (one srun per block)")):
            lines.append(f"| {label} | {over[f'overhead_{key}_s']} | "
                         f"{100 * over[f'ratio_{key}']:.1f} % |")
        lines += ["", f"Spawned Snakemake start (parse + DAG for one block job): "
                  f"{over['spawned_start_s']} s."]
    text = "\n".join(lines) + "\n"
    (out / "dag_scaling.md").write_text(text)
    (out / "dag_scaling.json").write_text(json.dumps({"dag": dag_rows, "overhead": over},
                                                     indent=1, default=str))
    print(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--blocks", type=int, default=4, help="blocks for the overhead run")
    parser.add_argument("--skip-dag", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dag_rows = [] if args.skip_dag else dag_scaling(args.sizes, args.out)
    over = None if args.skip_overhead else overhead(args.blocks, args.out)
    write_report(args.out, dag_rows, over)


if __name__ == "__main__":
    main()
