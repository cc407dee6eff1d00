"""How the global stage copes with a large round-to-round offset, by start strategy.

One generated pair like an EASI-FISH round pair (the generator of
tests/test_global_robust.py, bigger): 18 degrees about z and a field offset of
28 % (y, x) and 10 % (z) of the field of view, i.e. ~79 µm in the y-x plane,
~40 voxels at the 2 µm working resolution; fixed 1.0 x 0.5 x 0.5 µm voxels,
moving 1.25 x 0.6 x 0.6 µm. For each global step list it reports the median
and 95th-percentile target registration error at the true blob centres and
the wall time of ``global_align`` (reading/downsampling included).

Usage::

    .venv/bin/python benchmarks/global_start.py [--threads N] [--degrees D]
        [--shift Z Y X] [--out benchmarks/out]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from snakestream.register.global_stage import global_align  # noqa: E402
from snakestream.io.volumes import open_volume, write_volume  # noqa: E402
from snakestream.register.steps import normalize_steps  # noqa: E402
from snakestream.grid.geometry import apply_affine  # noqa: E402
from test_global_robust import make_pair  # noqa: E402

FIX_SHAPE = (64, 400, 400)
FIX_SPACING = np.array([1.0, 0.5, 0.5])
MOV_SPACING = np.array([1.25, 0.6, 0.6])
SHIFT_FRACTION = (0.10, 0.28, 0.28)
DEGREES = 18.0

AFFINE = {"alignment_spacing": 2.0, "shrink_factors": [2, 1], "smooth_sigmas": [4.0, 2.0],
          "optimizer_args": {"learningRate": 0.5, "minStep": 0.0, "numberOfIterations": 400}}
RANDOM = {"alignment_spacing": 4.0, "max_translation": 80.0, "max_rotation": 0.4}
CASES = {
    "affine alone (CENTER start)": [["affine", {**AFFINE, "initial_condition": "CENTER"}]],
    "affine alone (identity start)": [["affine", AFFINE]],
    "PHASE start + affine": [["affine", {**AFFINE, "initial_condition": "PHASE"}]],
    "random (500) + affine": [["random", RANDOM], ["affine", AFFINE]],
    "random (5000) + affine": [["random", {**RANDOM, "random_iterations": 5000}],
                               ["affine", AFFINE]],
    "ransac + affine": [["ransac", {"blob_radius": 2.5, "alignment_spacing": 1.0}],
                        ["affine", AFFINE]],
}


def tre_um(found, truth, landmarks):
    """Median and 95th percentile landmark error (µm)."""
    d = np.linalg.norm(apply_affine(found, landmarks) - apply_affine(truth, landmarks), axis=1)
    return float(np.median(d)), float(np.percentile(d, 95))


def run(threads, folder, degrees=DEGREES, shift_fraction=SHIFT_FRACTION):
    """Generate the pair under ``folder``, run every case; list of result dicts."""
    t0 = time.perf_counter()
    fix, mov, truth, landmarks = make_pair(seed=0, fix_shape=FIX_SHAPE, fix_spacing=FIX_SPACING,
                                           mov_spacing=MOV_SPACING, degrees=degrees,
                                           shift_fraction=shift_fraction)
    write_volume(os.path.join(folder, "fix.zarr"), fix, FIX_SPACING, dataset="s0")
    write_volume(os.path.join(folder, "mov.zarr"), mov, MOV_SPACING, dataset="s0")
    print(f"pair {fix.shape} / {mov.shape} made in {time.perf_counter() - t0:.1f} s; "
          f"{len(landmarks)} landmarks; start TRE {tre_um(np.eye(4), truth, landmarks)[0]:.1f} µm",
          flush=True)
    fix_vol = open_volume(os.path.join(folder, "fix.zarr"), "s0")
    mov_vol = open_volume(os.path.join(folder, "mov.zarr"), "s0")
    rows = []
    for label, steps in CASES.items():
        t0 = time.perf_counter()
        affine, qc = global_align(normalize_steps(steps, label), fix_vol, mov_vol,
                                  threads=threads, log=lambda m: None)
        seconds = time.perf_counter() - t0
        median, p95 = tre_um(affine, truth, landmarks)
        rows.append({"case": label, "median_tre_um": median, "p95_tre_um": p95,
                     "seconds": seconds, "ncc_after": qc[-1]["ncc_after"],
                     "steps": [(q["step"], q["status"], q["seconds"]) for q in qc]})
        print(f"{label}: median {median:.2f} µm, {seconds:.1f} s", flush=True)
    return rows


def table(rows):
    """Markdown table of the results."""
    voxel = FIX_SPACING.min()
    lines = ["| global steps | median TRE µm (fixed voxels) | p95 TRE µm | NCC after | wall s |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['median_tre_um']:.2f} ({r['median_tre_um'] / voxel:.1f})"
                     f" | {r['p95_tre_um']:.2f} | {r['ncc_after']:.3f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--degrees", type=float, default=DEGREES, help="rotation about z")
    parser.add_argument("--shift", type=float, nargs=3, default=SHIFT_FRACTION,
                        help="offset as fractions of the field of view, z y x")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args.threads, folder, args.degrees, args.shift)
    text = table(rows)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "global_start.json"), "w") as fh:
        json.dump({"threads": args.threads, "degrees": args.degrees, "shift": list(args.shift),
                   "rows": rows}, fh, indent=1)
    with open(os.path.join(args.out, "global_start.md"), "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
