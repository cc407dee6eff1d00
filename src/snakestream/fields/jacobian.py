"""Jacobian determinant of a displacement field, as statistics that sum over chunks.

Each gather slab reports :func:`jacobian_stats` of its chunks; the report merges them
(:func:`merge_jacobian_stats`) into the volume's histogram of log det J, fold count
and SDlogJ.
"""

import json

import numpy as np

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


def read_slab_stats(paths):
    """:func:`merge_jacobian_stats` of the gather slabs' marker files (JSON with a
    ``jacobian`` entry each), or None without any."""
    parts = []
    for path in paths:
        with open(path) as fh:
            parts.append(json.load(fh).get("jacobian"))
    return merge_jacobian_stats(parts)
