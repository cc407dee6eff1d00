"""The sparse deform step: samples, objective and ITK's regular step gradient descent.

See :mod:`snakestream.register.bspline` for the pieces and why. Coordinates are µm, z,y,x.
"""

import numpy as np

from snakestream.register import bspline as bs


def sample_fixed(image, data, params, seed):
    """Physical points (N, 3) and values of the fixed samples (voxel centres).

    RANDOM draws ``sampling_percentage`` of the voxels (of the mask, if any) without
    replacement from a generator seeded by ``seed``; REGULAR takes every k-th one;
    NONE takes all.
    """
    flat = np.flatnonzero(image.mask.reshape(-1)) if image.mask is not None \
        else np.arange(data.size)
    if params["sampling"] == "RANDOM":
        n = max(1, int(round(len(flat) * float(params["sampling_percentage"]))))
        flat = np.sort(np.random.default_rng(seed).choice(flat, size=min(n, len(flat)),
                                                          replace=False))
    elif params["sampling"] == "REGULAR":
        flat = flat[::max(1, int(round(1 / float(params["sampling_percentage"]))))]
    idx = np.stack(np.unravel_index(flat, data.shape), axis=1)
    return image.origin + idx * image.spacing, data.reshape(-1)[flat].astype(np.float64)


class Objective:
    """Metric value and gradient with respect to the B-spline coefficients (P, 3)."""

    def __init__(self, params, points, f, weights, affine, moving, m_range):
        self.points, self.f, self.W, self.WT = points, f, weights, weights.T.tocsr()
        self.lin, self.off = affine[:3, :3], affine[:3, 3]
        self.moving = moving
        if params["metric"] == "MMI":
            mi = bs.MattesMI(params["metric_args"].get("numberOfHistogramBins", 50), f, m_range)
            self.metric = mi
        else:
            plain = bs.correlation if params["metric"] == "C" else bs.mean_squares
            self.metric = lambda f_in, m, inside: plain(f_in, m)

    def __call__(self, coef):
        moved = (self.points + self.W @ coef) @ self.lin.T + self.off
        inside, m, grad = self.moving.sample(moved)
        if inside.sum() < 8:
            raise RuntimeError("fewer than 8 samples map inside the moving image")
        value, dvalue = self.metric(self.f[inside], m, inside)
        g = np.zeros_like(self.points)
        g[inside] = dvalue[:, None] * (grad @ self.lin)
        return float(value), self.WT @ g


def regular_step_descent(objective, coef, args):
    """ITK's RegularStepGradientDescentOptimizerv4 with unit scales.

    Each iteration steps ``learningRate × relaxation`` µm along the normalised
    negative gradient; the relaxation is multiplied by ``relaxationFactor`` whenever
    the gradient turns around. Stops after ``numberOfIterations``, when the gradient
    magnitude is below ``gradientMagnitudeTolerance`` or the step below ``minStep``.

    Returns (coef, iterations, stop reason, first value).
    """
    rate = float(args.get("learningRate", 0.25))
    relax = float(args.get("relaxationFactor", 0.5))
    min_step = float(args.get("minStep", 0.0))
    tol = float(args.get("gradientMagnitudeTolerance", 1e-4))
    relaxation, prev, first = 1.0, None, None
    stop = "maximum number of iterations"
    iteration = 0
    for iteration in range(1, int(args.get("numberOfIterations", 100)) + 1):
        value, grad = objective(coef)
        first = value if first is None else first
        norm = float(np.sqrt((grad * grad).sum()))
        if norm < tol:
            stop = "gradient magnitude tolerance met"
            break
        if prev is not None and float((grad * prev).sum()) < 0:
            relaxation *= relax
        if rate * relaxation < min_step:
            stop = "step too small"
            break
        coef = coef - rate * relaxation / norm * grad
        prev = grad
    return coef, iteration, stop, first


def fit(params, fix, mov, affine, fixed_parameters, seed=0):
    """Fit B-spline coefficients so that ``mov(affine(x + W c)) ≈ fix(x)``.

    Parameters
    ----------
    params : dict
        Normalised deform step; :func:`snakestream.register.steps.sparse_unsupported` must be None.
    fix, mov : snakestream.register.align.Image
        Images at the step's spacing, masks attached or None.
    affine : (4, 4) array
        The static transforms the step starts from (fixed -> moving µm).
    fixed_parameters : sequence
        The B-spline grid (sitk.BSplineTransform fixed parameters).
    seed : int
        Seed of the random sampling.

    Returns
    -------
    (parameters in sitk order, qc dict with metric_before/after, iterations, stop)
    """
    sigma = params["smooth_sigmas"][-1]
    f_data, m_data = bs.smoothed(fix, sigma), bs.smoothed(mov, sigma)
    points, f = sample_fixed(fix, f_data, params, seed)
    if len(points) < 8:
        raise RuntimeError("fewer than 8 fixed samples (mask too small)")
    moving = bs.MovingSampler(m_data, mov.spacing, mov.origin, mov.mask)
    weights = bs.weight_matrix(points, fixed_parameters)
    objective = Objective(params, points, f, weights, np.asarray(affine, float), moving,
                          (m_data.min(), m_data.max()))
    start = np.zeros((weights.shape[1], 3))
    coef, iterations, stop, before = regular_step_descent(objective, start,
                                                          params["optimizer_args"])
    if before is None:  # no iteration ran
        before = objective(start)[0]
    after, _ = objective(coef)
    qc = {"metric_before": before, "metric_after": after, "iterations": iterations,
          "stop": stop, "engine": "sparse"}
    return bs.to_sitk_order(coef), qc
