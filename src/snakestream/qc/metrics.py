"""Quality numbers: correlation, target registration error, Jacobian of a field."""

import numpy as np
import SimpleITK as sitk

from snakestream.fields import transform as tf


def ncc(a, b, mask=None):
    """Normalised cross-correlation of two same-shape arrays (optionally in a mask)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def resample_affine(fix, mov, affine):
    """Moving :class:`~snakestream.register.align.Image` resampled onto the fixed grid through ``affine``."""
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


LOGJ_BINS = np.linspace(-1.0, 1.0, 81)  # histogram edges of log det(I + grad d)


def jacobian_det(field, spacing):
    """det(I + ∇d) of a (Z, Y, X, 3) displacement field (µm) with spacing (µm), z,y,x.

    Differences are taken inside the array (one-sided at its faces).
    """
    grads = np.empty(field.shape[:3] + (3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            if field.shape[j] > 1:
                grads[..., i, j] = np.gradient(field[..., i], spacing[j], axis=j)
            else:
                grads[..., i, j] = 0.0
    grads += np.eye(3)
    return np.linalg.det(grads)


def jacobian_stats(det):
    """Summable statistics of Jacobian determinants: histogram of log det, folds, sums."""
    valid = det > 0
    logj = np.log(det[valid])
    hist, _ = np.histogram(np.clip(logj, LOGJ_BINS[0], LOGJ_BINS[-1]), bins=LOGJ_BINS)
    return {"n": int(det.size), "folded": int((~valid).sum()), "hist": hist.tolist(),
            "logj_sum": float(logj.sum()), "logj_sumsq": float((logj ** 2).sum()),
            "min": float(det.min()) if det.size else 1.0,
            "max": float(det.max()) if det.size else 1.0}


def merge_jacobian_stats(parts):
    """Combine :func:`jacobian_stats` of chunks (or of earlier merges); adds ``sdlogj``
    (standard deviation of log det J, the RnR-ExM smoothness score) and the bin ``edges``."""
    parts = [p for p in parts if p and p.get("n")]
    if not parts:
        return None
    out = {key: sum(p[key] for p in parts) for key in ("n", "folded", "logj_sum", "logj_sumsq")}
    out.update(hist=np.sum([p["hist"] for p in parts], axis=0).tolist(),
               min=min(p["min"] for p in parts), max=max(p["max"] for p in parts))
    n_pos = out["n"] - out["folded"]
    mean, meansq = out["logj_sum"] / max(n_pos, 1), out["logj_sumsq"] / max(n_pos, 1)
    out["sdlogj"] = float(np.sqrt(max(meansq - mean ** 2, 0.0)))
    out["edges"] = LOGJ_BINS.tolist()
    return out
