"""What a block job costs before it registers anything: interpreter start and imports.

Each line starts a fresh interpreter (with the thread variables Snakemake sets for a
1-thread job), imports one more thing than the line before, and records the process's
CPU (user + system, from ``wait4``). The difference between lines is that import's
cost when everything before it is loaded. The last cumulative line imports what a
block job run in its own process imports (``snakestream.smk.blockjob``), plus the readers
it opens (zarr, h5py): that is what every block job paid before the warm worker, and
what cluster block jobs pay. The line after it is the whole job process of a block
job that a warm worker runs (``scripts/align_block.py``'s client: the standard library
and ``snakestream.smk.worker``); the worker pays the cumulative line once per run.
``script:`` rules also pay Snakemake's script preamble (``snakemake.script``), shown
on its own line.

Usage::

    .venv/bin/python benchmarks/job_floor.py [--repeat 7] [--out benchmarks/out]

Writes ``job_floor.json`` under ``--out``; prints the table. Numbers vary with the
machine and the page cache (the first run after a reboot is slower); the median over
``--repeat`` runs is reported.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (label, import statement), cumulative: each line runs all statements up to it
STEPS = [
    ("interpreter", "pass"),
    ("+ numpy", "import numpy"),
    ("+ SimpleITK", "import SimpleITK"),
    ("+ scipy.sparse (sparse deform engine)", "import scipy.sparse"),
    ("+ zarr", "import zarr"),
    ("+ h5py", "import h5py"),
    ("+ snakestream.smk.blockjob (a block job in its own process)", "import snakestream.smk.blockjob"),
]
# (label, statement), each in a fresh interpreter of its own
SINGLE = [
    ("block job's client, with a warm worker", "import json; from snakestream import worker"),
    ("Snakemake's script preamble alone (script: rules)", "from snakemake import script"),
]


# What Snakemake puts in a 1-thread job's environment (snakemake.shell). Without
# OPENBLAS_NUM_THREADS=1, numpy's import starts a BLAS thread per core and costs
# twice the CPU (0.11 s instead of 0.06 s here), which a block job never pays.
JOB_ENV = {var: "1" for var in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                                "NUMEXPR_NUM_THREADS")}


def cpu_of(code):
    """CPU seconds (user + system) of a fresh interpreter running ``code`` as a 1-thread job."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **JOB_ENV)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"job_floor: {code!r} failed (exit status {status})")
    return usage.ru_utime + usage.ru_stime


def measure(repeat):
    """Median CPU per cumulative step, and each step's increment (seconds)."""
    rows, code, before = [], [], 0.0
    for label, statement in STEPS:
        code.append(statement)
        cpu = statistics.median(cpu_of("; ".join(code)) for _ in range(repeat))
        rows.append({"step": label, "cpu_s": round(cpu, 3), "increment_s": round(cpu - before, 3)})
        before = cpu
    for label, statement in SINGLE:
        cpu = statistics.median(cpu_of(statement) for _ in range(repeat))
        rows.append({"step": label, "cpu_s": round(cpu, 3), "increment_s": None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args(argv)
    rows = measure(args.repeat)
    width = max(len(r["step"]) for r in rows)
    print(f"{'step':{width}}  CPU (s)  increment (s)")
    for r in rows:
        inc = "" if r["increment_s"] is None else f"{r['increment_s']:.3f}"
        print(f"{r['step']:{width}}  {r['cpu_s']:7.3f}  {inc:>13}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "job_floor.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
