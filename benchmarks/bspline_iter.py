"""Per-iteration cost of the block stage's B-spline (deform) step, and what drives it.

Takes blocks of a generated demo pair (snakestream.demo.scene, known truth), runs the
block's affine step once, then times the deform step under variants of one
setting at a time: metric, sampling percentage, control-point spacing, the moving
initial transform, ITK's gradient-image filters, threads, optimiser. Reports CPU
seconds per iteration (process CPU time, so other jobs on the machine do not
inflate it), the number of B-spline parameters and metric samples, the cost per
(sample x parameter), and the TRE (median / 95th percentile, µm) of the block's
full transform at the truth landmarks inside the block cores.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bspline_iter.py [--data DIR]
        [--iterations 20] [--blocks 2] [--only NAME ...] [--out benchmarks/out]

``--data`` is a folder written by ``python -m snakestream.demo`` (it is generated
at 64x256x256 under ``--out`` when missing).
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from snakestream.register import align

from snakestream.demo import scene as demo  # noqa: E402
from snakestream.register.sitk_transforms import composite  # noqa: E402
from snakestream.register.block_stage import read_block_images  # noqa: E402
from snakestream.grid.blocks import block_seed  # noqa: E402
from snakestream.grid.layout import build_table  # noqa: E402
from snakestream.io.volumes import open_volume  # noqa: E402
from snakestream.register.steps import normalize_steps  # noqa: E402

# The issue's case: 32x96x96 block region (16x48x48 core, overlap 0.5), affine on 5 %,
# then a deform with 3 µm control points, Mattes MI, 5 % random sampling.
AFFINE = ["affine", {"shrink_factors": [1], "smooth_sigmas": [0.4], "sampling": "RANDOM",
                     "sampling_percentage": 0.05,
                     "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                        "numberOfIterations": 200}}]
DEFORM = {"control_point_spacing": 3.0, "control_point_levels": [1], "shrink_factors": [1],
          "smooth_sigmas": [0.4], "metric": "MMI", "sampling": "RANDOM",
          "sampling_percentage": 0.05,
          "optimizer_args": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 200}}
BLOCKSIZE, OVERLAP = (16, 48, 48), 0.5


def variant(**changes):
    """The issue's deform settings with some keys changed (``optimizer_args`` merged)."""
    out = copy.deepcopy(DEFORM)
    for key, value in changes.items():
        if key == "optimizer_args" and changes.get("optimizer", "RSGD") == "RSGD":
            out["optimizer_args"] = dict(out["optimizer_args"], **value)
        else:
            out[key] = value
    return out


# name: (deform settings, options) -- options: static (moving initial transform),
# grad_filter (ITK gradient-image filters on), threads
VARIANTS = {
    "issue case (MMI, 5 %, 3 µm)": (variant(), {}),
    "metric MS": (variant(metric="MS"), {}),
    "metric C": (variant(metric="C"), {}),
    "sampling 2 %": (variant(sampling_percentage=0.02), {}),
    "sampling 1 %": (variant(sampling_percentage=0.01), {}),
    "control points 4.5 µm": (variant(control_point_spacing=4.5), {}),
    "control points 6 µm": (variant(control_point_spacing=6.0), {}),
    "no moving initial transform": (variant(), {"static": False}),
    "gradient filters off": (variant(), {"grad_filter": False}),
    "2 ITK threads": (variant(), {"threads": 2}),
    "histogram bins 32": (variant(metric_args={"numberOfHistogramBins": 32}), {}),
    # whole-step variants (run with --iterations 0 to keep their own iteration counts)
    "issue case, 200 iterations": (variant(), {"keep_iterations": True}),
    "metric C, 200 iterations": (variant(metric="C"), {"keep_iterations": True}),
    "metric C, 50 iterations": (variant(metric="C", optimizer_args={"numberOfIterations": 50}),
                                {"keep_iterations": True}),
    "RSGD 50 iterations": (variant(optimizer_args={"numberOfIterations": 50}),
                           {"keep_iterations": True}),
    "LBFGSB 50 iterations": (variant(optimizer="LBFGSB", optimizer_args={
        "gradientConvergenceTolerance": 1e-5, "numberOfIterations": 50,
        "maximumNumberOfCorrections": 5, "maximumNumberOfFunctionEvaluations": 100,
        "costFunctionConvergenceFactor": 1e7}), {"keep_iterations": True}),
    "6 µm, 1 %, 50 iterations": (variant(control_point_spacing=6.0, sampling_percentage=0.01,
                                        optimizer_args={"numberOfIterations": 50}),
                                {"keep_iterations": True}),
    "3 µm, levels [1, 2], shrink [2, 1], 50+50": (variant(
        control_point_levels=[1, 2], shrink_factors=[2, 1], smooth_sigmas=[0.8, 0.4],
        optimizer_args={"numberOfIterations": 50}), {"keep_iterations": True}),
    "3 µm, 2 %, 50 iterations, pre-resampled": (variant(
        sampling_percentage=0.02, optimizer_args={"numberOfIterations": 50}),
        {"keep_iterations": True, "static": False}),
    "3 µm, 5 %, 50 iterations, pre-resampled": (variant(
        optimizer_args={"numberOfIterations": 50}), {"keep_iterations": True, "static": False}),
    "3 µm, 1 %, 50 iterations": (variant(sampling_percentage=0.01,
                                        optimizer_args={"numberOfIterations": 50}),
                                {"keep_iterations": True}),
}


def ensure_data(data, out):
    if data:
        return Path(data)
    path = Path(out) / "data" / "s64x256x256"
    if not (path / "truth.npz").exists():
        demo.make_demo(path, shape=(64, 256, 256), spacing=(0.8, 0.4, 0.4), seed=0)
    return path


def pick_blocks(truth, n):
    """``n`` interior blocks holding the most truth landmarks in their cores."""
    rows = [r for r in build_table(truth.fix_shape, BLOCKSIZE, OVERLAP).to_dict("records")
            if all(r[f"{a}1"] - r[f"{a}0"] == 2 * b for a, b in zip("zyx", BLOCKSIZE))]
    def inside(r):
        lo = np.array([r["cz0"], r["cy0"], r["cx0"]]) * truth.fix_spacing
        hi = np.array([r["cz1"], r["cy1"], r["cx1"]]) * truth.fix_spacing
        pts = truth.landmarks_fixed
        return pts[np.all((pts >= lo) & (pts < hi), axis=1)]
    rows.sort(key=lambda r: -len(inside(r)))
    return [(r, inside(r)) for r in rows[:n]]


def block_tre(transforms, points, truth):
    """Distances (µm) between the block's mapping of ``points`` and the truth."""
    comp = composite([t.to_sitk() for t in transforms])
    pred = np.array([comp.TransformPoint(p[::-1].tolist())[::-1] for p in points])
    return np.linalg.norm(pred - truth.transform(points), axis=1)


def timed_deform(params, fix, mov, static, seed, threads, grad_filter):
    """Run the deform step; returns (result, cpu seconds of Execute, samples, parameters)."""
    irm, f, m = align._prepare(params, fix, mov, static, seed, threads)
    if grad_filter is False:
        irm.MetricUseFixedImageGradientFilterOff()
        irm.MetricUseMovingImageGradientFilterOff()
    f_img, m_img = f.to_sitk(), m.to_sitk()
    bspline = align._bspline(f_img, params)
    irm.SetInitialTransformAsBSpline(bspline, inPlace=True,
                                     scaleFactors=params["control_point_levels"])
    c0 = time.process_time()
    irm.Execute(f_img, m_img)
    cpu = time.process_time() - c0
    result = align.StepResult("deform", "bspline", np.array(bspline.GetParameters()),
                              np.array(bspline.GetFixedParameters()))
    n_vox = int(np.prod(f.data.shape))
    pct = params["sampling_percentage"] if params["sampling"] != "NONE" else 1.0
    return result, cpu, int(irm.GetOptimizerIteration()), round(n_vox * pct), \
        len(bspline.GetParameters())


def prepare_blocks(data, n_blocks):
    """The truth and ``n_blocks`` blocks, each registered by the block affine step.

    Returns ``(truth, [(row, points, fix, mov, global_result, affine_result, seed)])``:
    the demo's truth, and per block its table row, landmarks, crops, the truth global
    affine as a step result, the block affine step's result and the block's seed.
    """
    truth = demo.load_truth(data / "truth.npz")
    fix_vol = open_volume(str(data / "fix.zarr"), "s0")
    mov_vol = open_volume(str(data / "mov.h5"), "/ch0")
    affine_step = normalize_steps([AFFINE], "affine")[0]
    prepared = []
    for row, points in pick_blocks(truth, n_blocks):
        fix, mov, _ = read_block_images(row, fix_vol, mov_vol, truth.affine)
        seed = block_seed(row["id"])
        glob = align.StepResult("global", "affine", truth.affine.ravel())
        aff = align.run_step(*affine_step, fix, mov, [glob], seed=seed)
        prepared.append((row, points, fix, mov, glob, aff, seed))
    return truth, prepared


def run(args):
    data = ensure_data(args.data, args.out)
    truth, prepared = prepare_blocks(data, args.blocks)
    print(f"data {data}; blocks {[p[0]['id'] for p in prepared]}, region "
          f"{[2 * b for b in BLOCKSIZE]} voxels; landmarks {sum(len(p[1]) for p in prepared)}; "
          f"TRE after global+block affine: median "
          f"{np.median(np.concatenate([block_tre([p[4], p[5]], p[1], truth) for p in prepared])):.3f} µm",
          flush=True)
    names = args.only or list(VARIANTS)
    rows = []
    for name in names:
        deform, opts = VARIANTS[name]
        deform = copy.deepcopy(deform)
        if args.iterations and not opts.get("keep_iterations"):
            deform["optimizer_args"]["numberOfIterations"] = args.iterations
        params = normalize_steps([["deform", deform]], "deform")[0][1]
        cpu = iters = 0
        dists = []
        for row, points, fix, mov, glob, aff, seed in prepared:
            static = [glob, aff] if opts.get("static", True) else []
            if not static:  # resample the moving crop through global+affine first
                mov = _pre_resampled(fix, mov, [glob, aff])
            res, c, it, samples, nparams = timed_deform(params, fix, mov, static, seed,
                                                        opts.get("threads", 1),
                                                        opts.get("grad_filter"))
            cpu += c
            iters += it
            dists.append(block_tre(([glob, aff] if static else [glob, aff]) + [res], points, truth))
        d = np.concatenate(dists)
        per_iter = cpu / max(iters, 1)
        out = {"variant": name, "params": nparams, "samples": samples, "iterations": iters,
               "cpu_s": round(cpu, 2), "ms_per_iter": round(1e3 * per_iter, 1),
               "ns_per_sample_param": round(1e9 * per_iter / (samples * nparams), 2),
               "tre_median": round(float(np.median(d)), 3),
               "tre_p95": round(float(np.percentile(d, 95)), 3)}
        rows.append(out)
        print("\t".join(str(v) for v in out.values()), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(Path(args.out) / "bspline_iter.json", "w") as fh:
        json.dump(rows, fh, indent=1)
    return rows


def _pre_resampled(fix, mov, static, pad=4):
    """The moving crop resampled through ``static`` onto the fixed grid grown by ``pad`` voxels.

    The deform step then runs without a moving initial transform.
    """
    comp = composite([s.to_sitk() for s in static])
    origin = fix.origin - pad * fix.spacing
    ref = align.Image(np.zeros(tuple(np.array(fix.data.shape) + 2 * pad), np.float32),
                      fix.spacing, origin).to_sitk()
    img = sitk.Resample(mov.to_sitk(), ref, comp, sitk.sitkLinear, 0.0)
    return align.Image(sitk.GetArrayFromImage(img), fix.spacing, origin)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--iterations", type=int, default=20,
                        help="iterations per run (cost per iteration is what is measured)")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS))
    args = parser.parse_args(argv)
    print("variant\tparams\tsamples\titerations\tcpu_s\tms_per_iter\tns_per_sample_param\t"
          "tre_median\ttre_p95")
    run(args)


if __name__ == "__main__":
    main()
