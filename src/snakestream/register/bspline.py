"""B-spline (deform) registration with a sparse parameter Jacobian.

SimpleITK's v4 metrics build a dense 3 x N Jacobian of a B-spline transform for
every metric sample, so one iteration costs ~10 ns x samples x parameters (1.1 s
for a 32x96x96 block with 3 µm control points). A cubic B-spline point moves with
only 4^3 = 64 control points: with that sparsity an iteration costs ~samples x 64 x 3
multiply-adds (~100x less) whatever the control-point spacing.

This module does the deform step that way, on SimpleITK's own B-spline grid
(``sitk.BSplineTransformInitializer``; the result is a ``sitk.BSplineTransform``'s
parameters), with ITK's metric definitions (C, MS, Mattes MI) and ITK's regular
step gradient descent. All coordinates are physical µm in z, y, x order; images are
:class:`snakestream.register.align.Image` records.
"""

import numpy as np
import SimpleITK as sitk
from scipy import sparse


def _cubic(t):
    """Cubic B-spline kernel at offsets ``t`` (any shape)."""
    t = np.abs(t)
    return np.where(t < 1, (4 - 6 * t**2 + 3 * t**3) / 6,
                    np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _cubic_derivative(t):
    """Derivative of :func:`_cubic` with respect to ``t``."""
    a = np.abs(t)
    d = np.where(a < 1, (-12 * a + 9 * a**2) / 6, np.where(a < 2, -((2 - a) ** 2) / 2, 0.0))
    return np.sign(t) * d


def grid_geometry(fixed_parameters):
    """Control-point grid (size, origin, spacing), z,y,x, of a sitk.BSplineTransform.

    Only identity directions occur here (our images carry none).
    """
    fp = np.asarray(fixed_parameters, float)
    return fp[0:3][::-1].astype(int), fp[3:6][::-1], fp[6:9][::-1]


def weight_matrix(points, fixed_parameters):
    """Sparse (points x control points) matrix of cubic B-spline weights.

    Parameters
    ----------
    points : (N, 3) array
        Physical points, µm, z,y,x.
    fixed_parameters : sequence
        A sitk.BSplineTransform's fixed parameters.

    Returns
    -------
    scipy.sparse.csr_matrix
        Columns are control points flattened z,y,x with x fastest (ITK's order), so
        ``W @ coef`` with ``coef`` (P, 3) is the displacement at each point.
    """
    size, origin, spacing = grid_geometry(fixed_parameters)
    u = (np.asarray(points, float) - origin) / spacing
    start = np.floor(u - 1).astype(int)  # ITK: floor(u - (order - 1) / 2)
    cols, vals = np.zeros((len(u), 1), int), np.ones((len(u), 1))
    for axis in range(3):
        k = start[:, axis, None] + np.arange(4)
        w = _cubic(u[:, axis, None] - k)
        k = np.clip(k, 0, size[axis] - 1)
        stride = int(np.prod(size[axis + 1:]))
        cols = (cols[:, :, None] + k[:, None, :] * stride).reshape(len(u), -1)
        vals = (vals[:, :, None] * w[:, None, :]).reshape(len(u), -1)
    rows = np.repeat(np.arange(len(u)), cols.shape[1])
    return sparse.csr_matrix((vals.ravel(), (rows, cols.ravel())),
                             shape=(len(u), int(np.prod(size))))


def to_sitk_order(coef):
    """(P, 3) z,y,x coefficients -> sitk.BSplineTransform parameter vector (x, y, z blocks)."""
    return np.concatenate([coef[:, 2], coef[:, 1], coef[:, 0]])


def smoothed(image, sigma_um):
    """Float32 copy of ``image.data`` smoothed by a Gaussian of ``sigma_um`` µm.

    SimpleITK's discrete Gaussian (variance sigma², image spacing on), the filter
    ITK's v4 registration smooths each level with; it also keeps scipy.ndimage out
    of the block job's imports.
    """
    if not sigma_um:
        return image.data.astype(np.float32)
    return sitk.GetArrayFromImage(sitk.DiscreteGaussian(image.to_sitk(), float(sigma_um) ** 2))


class MovingSampler:
    """Trilinear value and gradient (per µm, z,y,x) of a moving image at physical points."""

    def __init__(self, data, spacing, origin, mask=None):
        self.spacing, self.origin = np.asarray(spacing, float), np.asarray(origin, float)
        grads = [g / s for g, s in zip(np.gradient(data), self.spacing)]
        self.table = np.stack([data] + grads, axis=-1).reshape(-1, 4).astype(np.float32)
        self.shape = np.array(data.shape)
        self.strides = np.array([data.shape[1] * data.shape[2], data.shape[2], 1])
        self.mask = None if mask is None else mask.reshape(-1).astype(bool)
        self.offsets = [(np.array(c), int((np.array(c) * self.strides).sum()))
                        for c in np.ndindex(2, 2, 2)]

    def sample(self, points):
        """Return (inside, values, gradients) for (N, 3) points; outside points are dropped.

        A point is inside when it lies within the image (and on the mask, if any).
        """
        idx = (points - self.origin) / self.spacing
        inside = np.all((idx >= 0) & (idx <= self.shape - 1), axis=1)
        i0 = np.minimum(np.floor(idx[inside]).astype(np.int64), self.shape - 2)
        base = (i0 * self.strides).sum(axis=1)
        if self.mask is not None:
            near = self.mask[base]
            inside[inside] = near
            i0, base = i0[near], base[near]
        frac = idx[inside] - i0
        out = np.zeros((len(base), 4))
        for corner, offset in self.offsets:
            w = np.prod(np.where(corner, frac, 1 - frac), axis=1)
            out += w[:, None] * self.table[base + offset]
        return inside, out[:, 0], out[:, 1:]


def correlation(f, m):
    """ITK's correlation metric -(Σf'm')²/(Σf'² Σm'²) and its derivative per sample."""
    fc, mc = f - f.mean(), m - m.mean()
    sfm, sff, smm = (fc * mc).sum(), (fc * fc).sum(), (mc * mc).sum()
    if sff <= 0 or smm <= 0:
        return 0.0, np.zeros_like(m)
    value = -sfm * sfm / (sff * smm)
    return value, -2 * sfm / (sff * smm) * (fc - sfm / smm * mc)


def mean_squares(f, m):
    """ITK's mean squares metric Σ(m-f)²/N and its derivative per sample."""
    diff = m - f
    return float((diff * diff).sum()) / len(f), 2 * diff / len(f)


class MattesMI:
    """ITK's Mattes mutual information (negated) with its derivative per sample.

    Fixed values fall in histogram bins (zero-order Parzen window), moving values are
    spread over four bins by a cubic B-spline window; two padding bins on each side.
    """

    PAD = 2

    def __init__(self, bins, f, m_range):
        self.bins = int(bins)
        lo, hi = float(f.min()), float(f.max())
        self.fixed_bin = np.clip(((f - lo) / max(hi - lo, 1e-12) * (self.bins - 2 * self.PAD - 1)
                                  + self.PAD).astype(int), self.PAD, self.bins - self.PAD - 1)
        self.m_lo = float(m_range[0])
        self.m_width = max(float(m_range[1] - m_range[0]), 1e-12) / (self.bins - 2 * self.PAD - 1)

    def __call__(self, f_unused, m, inside):
        a = self.fixed_bin[inside]
        t = np.clip((m - self.m_lo) / self.m_width + self.PAD, self.PAD, self.bins - self.PAD - 1)
        b = np.floor(t).astype(int)[:, None] - 1 + np.arange(4)
        w = _cubic(t[:, None] - b)
        flat = (a[:, None] * self.bins + b).ravel()
        n = len(m)
        joint = np.bincount(flat, w.ravel(), self.bins * self.bins).reshape(self.bins, -1) / n
        p_f, p_m = joint.sum(axis=1), joint.sum(axis=0)
        nz = joint > 1e-16
        ratio = np.zeros_like(joint)
        ratio[nz] = np.log(joint[nz] / np.outer(p_f, p_m)[nz])
        value = -float((joint[nz] * ratio[nz]).sum())
        log_cond = np.zeros_like(joint)
        log_cond[nz] = np.log(joint[nz] / np.broadcast_to(p_m, joint.shape)[nz])
        dw = _cubic_derivative(t[:, None] - b) / self.m_width
        dvalue = -(dw * log_cond[a[:, None], b]).sum(axis=1) / n
        return value, dvalue
