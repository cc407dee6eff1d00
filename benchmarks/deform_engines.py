"""Per-iteration cost of the library's deform step: sparse engine vs SimpleITK's.

The issue's case (``bspline_iter.py``): 32x96x96 block regions of the generated
64x256x256 pair after the true global affine and the block's affine step; deform
with 3 µm control points on 5 % random samples, one thread. Each case runs through
``snakestream.register.align.run_step`` with ``engine: sparse`` and ``engine: itk`` (the same
step dictionary otherwise) and reports process CPU per iteration (whole step,
set-up included, divided by its iterations) and the TRE at the truth landmarks.

    PYTHONPATH=src .venv/bin/python benchmarks/deform_engines.py [--data DIR]
        [--blocks 2] [--no-itk]
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(Path(__file__).resolve().parent)]

import bspline_iter as bi  # noqa: E402
from snakestream.register import align
from snakestream.register.steps import normalize_steps  # noqa: E402

# name: (changes to the deform step, run SimpleITK too)
CASES = {
    "issue case: MMI, 200 iterations": (dict(), False),
    "MMI, 50 iterations": (dict(optimizer_args={"numberOfIterations": 50}), True),
    "C, 200 iterations": (dict(metric="C"), False),
    "C, 50 iterations": (dict(metric="C", optimizer_args={"numberOfIterations": 50}), True),
    "MS, 50 iterations": (dict(metric="MS", optimizer_args={"numberOfIterations": 50}), False),
    "MMI, 50 iterations, 1.6 µm control points": (dict(
        control_point_spacing=1.6, optimizer_args={"numberOfIterations": 50}), False),
    "MMI, 50 iterations, 2 %": (dict(
        sampling_percentage=0.02, optimizer_args={"numberOfIterations": 50}), False),
}


def prepare(data, n_blocks):
    """Blocks with their crops, static transforms (truth global + block affine) and seed."""
    truth, blocks = bi.prepare_blocks(data, n_blocks)
    return truth, [(points, fix, mov, [glob, aff], seed)
                   for _, points, fix, mov, glob, aff, seed in blocks]


def run_case(params, blocks, truth):
    """CPU per iteration (ms), iterations, parameters and TRE over ``blocks``."""
    cpu, iterations, dists = 0.0, 0, []
    for points, fix, mov, static, seed in blocks:
        c0 = time.process_time()
        result = align.run_step("deform", params, fix, mov, static, seed=seed)
        cpu += time.process_time() - c0
        iterations += result.qc.get("iterations", 0)
        dists.append(bi.block_tre(static + [result], points, truth))
    d = np.concatenate(dists)
    return {"engine": result.qc.get("engine"), "params": len(result.parameters),
            "iterations": iterations, "cpu_s": round(cpu, 2),
            "ms_per_iter": round(1e3 * cpu / max(iterations, 1), 1),
            "tre_median": round(float(np.median(d)), 3),
            "tre_p95": round(float(np.percentile(d, 95)), 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--no-itk", action="store_true", help="skip the SimpleITK runs")
    args = parser.parse_args(argv)
    truth, blocks = prepare(bi.ensure_data(args.data, args.out), args.blocks)
    keys = ["engine", "params", "iterations", "cpu_s", "ms_per_iter", "tre_median", "tre_p95"]
    print("case\t" + "\t".join(keys), flush=True)
    rows = []
    for name, (change, with_itk) in CASES.items():
        for engine in ["sparse"] + (["itk"] if with_itk and not args.no_itk else []):
            step = bi.variant(**copy.deepcopy(change), engine=engine)
            params = normalize_steps([["deform", step]], "deform")[0][1]
            row = {"case": name, **run_case(params, blocks, truth)}
            rows.append(row)
            print("\t".join(str(row[k]) for k in ["case"] + keys), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / "deform_engines.json", "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
