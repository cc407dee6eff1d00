"""Prototype: the block B-spline step with a sparse parameter Jacobian (numpy/scipy).

SimpleITK's v4 metrics build a dense 3 x N Jacobian of the transform for every metric
sample (a B-spline has no "local support" category in ITK), so one iteration costs
~10 ns x samples x parameters whatever the metric. A cubic B-spline point depends on only
4^3 = 64 control points; with that sparsity the gradient costs ~samples x 64 x 3.

This prototype does the same registration as snakestream's deform step for metric C
(ITK's CorrelationImageToImageMetricv4: -(sum f'm')^2 / (sum f'^2 sum m'^2), centred
values) with ITK's regular step gradient descent (step ``learningRate`` µm along the
normalised gradient, halved when the gradient turns around), on the same B-spline grid
(sitk.BSplineTransformInitializer), the same random voxel sample (seeded) and the same
static transforms, and returns a sitk.BSplineTransform. It is a measurement tool for
the per-iteration cost, not a library replacement (no masks, no pyramid, metric C/MS only).

    PYTHONPATH=scripts .venv/bin/python benchmarks/sparse_bspline.py [--data DIR]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(Path(__file__).resolve().parent)]

from snakestream import align  # noqa: E402
from snakestream import transform as tf  # noqa: E402


def _cubic(t):
    """Cubic B-spline kernel weights of offsets ``t`` (any shape)."""
    t = np.abs(t)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6,
                    np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def bspline_matrix(points_zyx, fixed_parameters):
    """Sparse (samples x control points) matrix of B-spline weights, ITK's grid and order.

    ``fixed_parameters`` are a sitk.BSplineTransform's (size, origin, spacing, direction
    in x,y,z; identity direction assumed). Column index = flattened (z, y, x) control
    point, x fastest, which is ITK's parameter order within each component.
    """
    fp = np.asarray(fixed_parameters, float)
    size, origin, spacing = fp[0:3][::-1].astype(int), fp[3:6][::-1], fp[6:9][::-1]
    u = (np.asarray(points_zyx, float) - origin) / spacing  # (N, 3) grid units
    start = np.floor(u - 1).astype(int)  # ITK: floor(u - (order - 1) / 2)
    cols, vals = None, None
    for axis in range(3):
        k = start[:, axis, None] + np.arange(4)  # (N, 4)
        w = _cubic(u[:, axis, None] - k)
        k = np.clip(k, 0, size[axis] - 1)
        stride = int(np.prod(size[axis + 1:]))
        if cols is None:
            cols, vals = k * stride, w
        else:
            cols = (cols[:, :, None] + k[:, None, :] * stride).reshape(len(u), -1)
            vals = (vals[:, :, None] * w[:, None, :]).reshape(len(u), -1)
    rows = np.repeat(np.arange(len(u)), cols.shape[1])
    return sparse.csr_matrix((vals.ravel(), (rows, cols.ravel())),
                             shape=(len(u), int(np.prod(size))))


class Moving:
    """Smoothed moving crop with its gradient, sampled trilinearly at physical points."""

    def __init__(self, image, sigma_um):
        data = image.data.astype(np.float32)
        if sigma_um:
            data = ndimage.gaussian_filter(data, sigma_um / image.spacing)
        self.spacing, self.origin = image.spacing, image.origin
        grads = [g / s for g, s in zip(np.gradient(data), image.spacing)]
        # value and gradient side by side: one gather per corner gives all four
        self.table = np.stack([data] + grads, axis=-1).reshape(-1, 4).astype(np.float32)
        self.shape = np.array(data.shape)
        self.strides = np.array([data.shape[1] * data.shape[2], data.shape[2], 1])
        self.corners = [np.array(c) for c in np.ndindex(2, 2, 2)]

    def sample(self, points):
        idx = (points - self.origin) / self.spacing
        inside = np.all((idx >= 0) & (idx <= self.shape - 1), axis=1)
        idx = idx[inside]
        i0 = np.minimum(np.floor(idx).astype(np.int64), self.shape - 2)
        frac = idx - i0
        base = (i0 * self.strides).sum(axis=1)
        out = np.zeros((len(idx), 4))
        for c in self.corners:
            w = np.prod(np.where(c, frac, 1 - frac), axis=1)
            out += w[:, None] * self.table[base + int((c * self.strides).sum())]
        return inside, out[:, 0], out[:, 1:]


def metric_c(f, m):
    """ITK's correlation metric value and its derivative with respect to each m."""
    fc, mc = f - f.mean(), m - m.mean()
    # element-wise sums, not BLAS: dot products go through OpenBLAS, whose thread
    # start-up costs ~15 ms a call on this machine for 15 k elements
    sfm, sff, smm = (fc * mc).sum(), (fc * fc).sum(), (mc * mc).sum()
    value = -sfm * sfm / (sff * smm)
    dvalue = -2 * sfm / (sff * smm) * (fc - sfm / smm * mc)
    return value, dvalue


def metric_ms(f, m):
    diff = m - f
    return float((diff * diff).sum()) / len(f), 2 * diff / len(f)


METRICS = {"C": metric_c, "MS": metric_ms}


def sparse_deform(params, fix, mov, static, seed=0, log=None):
    """The deform step of :func:`snakestream.align.run_step` with a sparse Jacobian.

    Returns (StepResult, qc) with qc['seconds'], qc['iterations'], qc['metric_*'].
    """
    t0 = time.perf_counter()
    f_img = fix.to_sitk()
    bsp = align._bspline(f_img, params)
    fixed_parameters = bsp.GetFixedParameters()
    sigma = params["smooth_sigmas"][-1]
    fdata = fix.data.astype(np.float32)
    if sigma:
        fdata = ndimage.gaussian_filter(fdata, sigma / fix.spacing)
    rng = np.random.default_rng(seed)
    n_vox = fdata.size
    pct = params["sampling_percentage"] if params["sampling"] != "NONE" else 1.0
    pick = rng.choice(n_vox, size=max(1, int(round(n_vox * pct))), replace=False)
    idx = np.stack(np.unravel_index(pick, fdata.shape), axis=1)
    x = fix.origin + idx * fix.spacing
    f = fdata.reshape(-1)[pick].astype(np.float64)
    W = bspline_matrix(x, fixed_parameters)
    WT = W.T.tocsr()
    A = align.static_affine(static)
    lin, off = A[:3, :3], A[:3, 3]
    moving = Moving(mov, sigma)
    metric = METRICS[params["metric"]]
    opt = params["optimizer_args"]
    rate, relax = float(opt.get("learningRate", 0.25)), float(opt.get("relaxationFactor", 0.5))
    min_step = float(opt.get("minStep", 0.0))
    tol = float(opt.get("gradientMagnitudeTolerance", 1e-4))
    coef = np.zeros((W.shape[1], 3))  # z, y, x displacement components
    prev, first_value, value, it = None, None, None, 0

    def evaluate(coef):
        p = np.einsum("nj,kj->nk", x + W @ coef, lin) + off
        inside, m, grad = moving.sample(p)
        v, dv = metric(f[inside], m.astype(np.float64))
        g = np.zeros((len(x), 3))
        # d value / d displacement (zyx) = dv * lin^T grad
        g[inside] = dv[:, None] * np.einsum("nk,kj->nj", grad, lin)
        return v, WT @ g

    t_iter = time.perf_counter()
    for it in range(int(opt.get("numberOfIterations", 100))):
        value, grad = evaluate(coef)
        if first_value is None:
            first_value = value
        norm = np.sqrt((grad * grad).sum())
        if norm < tol:
            break
        if prev is not None and (grad * prev).sum() < 0:
            rate *= relax
        if rate < min_step:
            break
        coef -= rate / norm * grad
        prev = grad
    iterations = it + 1
    per_iter = (time.perf_counter() - t_iter) / max(iterations, 1)
    after, _ = evaluate(coef)
    size = np.asarray(fixed_parameters[0:3], int)
    # sitk parameter order: component x, y, z; each an image flattened x fastest
    zyx = coef.reshape(tuple(size[::-1]) + (3,))
    params_xyz = np.concatenate([zyx[..., 2].ravel(), zyx[..., 1].ravel(), zyx[..., 0].ravel()])
    qc = {"metric_before": float(first_value), "metric_after": float(after),
          "iterations": iterations, "seconds_per_iteration": per_iter,
          "seconds": time.perf_counter() - t0, "samples": len(x), "parameters": coef.size}
    result = align.StepResult("deform", "bspline", params_xyz, np.asarray(fixed_parameters))
    return result, qc


def main(argv=None):
    import copy
    import json

    import bspline_iter as bi
    from snakestream import demo
    from snakestream.blockalign import read_block_images
    from snakestream.blocks import block_seed
    from snakestream.io import open_volume
    from snakestream.steps import normalize_steps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--itk", action="store_true", help="also run SimpleITK on each case")
    args = parser.parse_args(argv)
    data = bi.ensure_data(args.data, args.out)
    truth = demo.load_truth(data / "truth.npz")
    fix_vol = open_volume(str(data / "fix.zarr"), "s0")
    mov_vol = open_volume(str(data / "mov.h5"), "/ch0")
    affine_step = normalize_steps([bi.AFFINE], "affine")[0]
    prepared = []
    for row, points in bi.pick_blocks(truth, args.blocks):
        fix, mov, _ = read_block_images(row, fix_vol, mov_vol, truth.affine)
        seed = block_seed(row["id"])
        glob = align.StepResult("global", "affine", truth.affine.ravel())
        aff = align.run_step(*affine_step, fix, mov, [glob], seed=seed)
        prepared.append((points, fix, mov, [glob, aff], seed))
    cases = {
        "issue case, metric C, 200 iterations": dict(metric="C"),
        "issue case, metric C, 50 iterations": dict(metric="C",
                                                    optimizer_args={"numberOfIterations": 50}),
        "issue case, metric MS, 200 iterations": dict(metric="MS"),
        "issue case (C), 1.6 µm control points, 200 iterations": dict(
            metric="C", control_point_spacing=1.6),
    }
    print("case\tengine\tparams\tsamples\tms_per_iter\titerations\ttre_median\ttre_p95", flush=True)
    rows = []
    for name, change in cases.items():
        params = normalize_steps([["deform", bi.variant(**copy.deepcopy(change))]], "d")[0][1]
        engines = ["sparse"] + (["SimpleITK"] if args.itk else [])
        for engine in engines:
            per_iter, iters, dists = [], 0, []
            for points, fix, mov, static, seed in prepared:
                if engine == "sparse":
                    res, qc = sparse_deform(params, fix, mov, static, seed)
                    per_iter.append(qc["seconds_per_iteration"])
                    iters += qc["iterations"]
                    n_par, n_samp = qc["parameters"], qc["samples"]
                else:
                    res, cpu, it, n_samp, n_par = bi.timed_deform(params, fix, mov, static,
                                                                  seed, 1, None)
                    per_iter.append(cpu / max(it, 1))
                    iters += it
                dists.append(bi.block_tre(static + [res], points, truth))
            d = np.concatenate(dists)
            row = {"case": name, "engine": engine, "params": n_par, "samples": n_samp,
                   "ms_per_iter": round(1e3 * float(np.mean(per_iter)), 2),
                   "iterations": iters, "tre_median": round(float(np.median(d)), 3),
                   "tre_p95": round(float(np.percentile(d, 95)), 3)}
            rows.append(row)
            print("\t".join(str(v) for v in row.values()), flush=True)
    with open(Path(args.out) / "sparse_bspline.json", "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
