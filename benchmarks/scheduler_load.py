"""Snakemake's own CPU and threads while thousands of block jobs are ready at once.

Runs the block stage (``<output>/blocks/qc.tsv``) of a generated pair cut into many
small blocks, each registered with a one-iteration affine so that the jobs are short
and Snakemake's scheduling is what is measured. Two runs, same everything:

* ``patched``: snakestream as shipped (``scheduler_timers``: one pending re-evaluation
  timer);
* ``snakemake``: ``SNAKESTREAM_KEEP_SNAKEMAKE_TIMERS=1``, Snakemake's own behaviour
  (one more timer chain per finished job, snakemake/snakemake#3804).

For each it samples the Snakemake process every 0.5 s: its own CPU (user + system of
the process, not of its jobs, from /proc/<pid>/stat) and its thread count.

Usage::

    .venv/bin/python benchmarks/scheduler_load.py [--size 64x256x256]
        [--blocksize 4 12 12] [--cores 2] [--only patched|snakemake] [--out benchmarks/out]

Writes ``scheduler_load.json`` under --out and prints a table (~8 min a run at the
defaults, ~2,000 block jobs, on 2 cores).
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import pipeline_bench as pb  # noqa: E402

ARMS = {"patched": {}, "snakemake": {"SNAKESTREAM_KEEP_SNAKEMAKE_TIMERS": "1"}}


def one_iteration_steps():
    """The benchmark's affine block step, stopped after one iteration."""
    step = copy.deepcopy(pb.PRESETS["fast"][0])
    step[1]["optimizer_args"]["numberOfIterations"] = 1
    return [step]


def sample(pid):
    """(own CPU seconds, threads) of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as fh:
            threads = next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))
    except (OSError, StopIteration):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), threads


def run_arm(name, cfg_path, run_dir, cores, timespan):
    """Run the block stage once; returns its record (wall, Snakemake CPU, peak threads)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **ARMS[name])
    blocks_dir = Path(yaml.safe_load(cfg_path.read_text())["output"]) / "blocks"
    target = str(blocks_dir / "qc.tsv")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(run_dir),
           "--configfile", str(cfg_path), "--cores", str(cores), "--quiet", "rules",
           "--scheduler", "greedy", "--max-jobs-per-timespan", timespan, target]
    t0, last, peak = time.perf_counter(), (0.0, 0), 0
    with open(run_dir / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            now = sample(proc.pid)
            if now:
                last, peak = now, max(peak, now[1])
            time.sleep(0.5)
    if proc.returncode:
        raise SystemExit(f"scheduler_load: {name} run failed, see {run_dir / f'{name}.log'}")
    jobs = sum(1 for _ in blocks_dir.rglob("z*_y*_x*.npz"))
    return {"arm": name, "block_jobs": jobs, "wall_s": round(time.perf_counter() - t0, 1),
            "snakemake_cpu_s": round(last[0], 1), "peak_threads": peak}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x256x256")
    parser.add_argument("--blocksize", type=int, nargs=3, default=[4, 12, 12])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--max-jobs-per-timespan", default=pb.TIMESPAN)
    parser.add_argument("--only", choices=sorted(ARMS), default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    data, _ = pb.ensure_data(pb.parse_size(args.size), out / "data")
    rows = []
    for name in [args.only] if args.only else list(ARMS):
        run_dir = out / "scheduler_load" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        cfg = pb.make_config(data, run_dir / "results", block_steps=one_iteration_steps())
        cfg["blocks"]["blocksize"] = args.blocksize
        cfg.pop("truth")
        cfg_path = run_dir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        print(f"== {name}: block stage of {args.size} in {args.blocksize} blocks", flush=True)
        rows.append(run_arm(name, cfg_path, run_dir, args.cores, args.max_jobs_per_timespan))
        print("   " + json.dumps(rows[-1]), flush=True)
    print(f"{'arm':10} {'block jobs':>10} {'wall (s)':>9} {'Snakemake CPU (s)':>18} "
          f"{'peak threads':>12}")
    for r in rows:
        print(f"{r['arm']:10} {r['block_jobs']:>10} {r['wall_s']:>9} {r['snakemake_cpu_s']:>18} "
              f"{r['peak_threads']:>12}")
    (out / "scheduler_load.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
