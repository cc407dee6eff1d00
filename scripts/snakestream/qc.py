"""Quality numbers: correlation, target registration error, Jacobian of a field."""

import numpy as np
import SimpleITK as sitk

from . import transform as tf


def ncc(a, b, mask=None):
    """Normalised cross-correlation of two same-shape arrays (optionally in a mask)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def resample_affine(fix, mov, affine):
    """Moving :class:`~snakestream.align.Image` resampled onto the fixed grid through ``affine``."""
    out = sitk.Resample(mov.to_sitk(), fix.to_sitk(), tf.affine_to_sitk(affine),
                        sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(out)


def ncc_after_affine(fix, mov, affine):
    """NCC of the fixed image and the moving image pulled through ``affine``."""
    return round(ncc(fix.data, resample_affine(fix, mov, affine), fix.mask), 5)


def tre(predicted, truth):
    """Median and 95th percentile of point distances (µm)."""
    d = np.linalg.norm(np.asarray(predicted) - np.asarray(truth), axis=1)
    return {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "n": int(d.size)}
