"""Target registration error: distances between mapped and true landmarks.

The other numbers a run is judged by live with what they measure: normalised
cross-correlation in :mod:`snakestream.register.similarity`, the Jacobian of the
field in :mod:`snakestream.fields.jacobian`.
"""

import numpy as np

from snakestream.errors import InputError
from snakestream.fields.transform import transform_points


def distances(predicted, truth):
    """Distance (µm) of each predicted point from its true position, (N,).

    Parameters
    ----------
    predicted, truth : (N, 3) arrays
        Points in µm, z, y, x, row i of one matching row i of the other.
    """
    predicted, truth = np.asarray(predicted, float), np.asarray(truth, float)
    if predicted.shape != truth.shape:
        raise InputError("predicted points", f"shape {predicted.shape} does not match the "
                         f"{truth.shape} true points.",
                         "map every landmark, in the order of the truth.")
    return np.linalg.norm(predicted - truth, axis=1)


def summary(d):
    """``median``, ``p95``, ``mean`` and ``max`` of distances ``d`` (µm, NaN when empty) and ``n``."""
    d = np.asarray(d, float)
    if d.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "mean": float("nan"),
                "max": float("nan"), "n": 0}
    return {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)),
            "mean": float(d.mean()), "max": float(d.max()), "n": int(d.size)}


def tre(predicted, truth):
    """Target registration error of predicted points against their true positions.

    Parameters
    ----------
    predicted, truth : (N, 3) arrays
        Points in µm, z, y, x, row i of one matching row i of the other.

    Returns
    -------
    dict: ``median``, ``p95``, ``mean`` and ``max`` distance (µm, NaN without points)
    and ``n`` (:func:`summary`).
    """
    return summary(distances(predicted, truth))


def stage_errors(landmarks_fixed, landmarks_moving, affine, field=None, field_spacing=None, *,
                 field_origin=None):
    """Each landmark's error (µm, (N,)) with no transform, the affine and ``[affine, field]``.

    Parameters as :func:`stage_tre`; returns ``{"before": d, "global": d, "blocks": d}``
    (``blocks`` only with a field).
    """
    out = {"before": distances(landmarks_fixed, landmarks_moving),
           "global": distances(transform_points(landmarks_fixed, affine), landmarks_moving)}
    if field is not None:
        moved = transform_points(landmarks_fixed, affine, field, field_spacing,
                                 field_origin=field_origin)
        out["blocks"] = distances(moved, landmarks_moving)
    return out


def stage_tre(landmarks_fixed, landmarks_moving, affine, field=None, field_spacing=None, *,
              field_origin=None):
    """TRE of no transform, of the affine alone and, with a field, of ``[affine, field]``.

    Parameters
    ----------
    landmarks_fixed, landmarks_moving : (N, 3) arrays
        Corresponding points, fixed and moving µm, z, y, x.
    affine : (4, 4) array
        Global fixed -> moving affine, µm.
    field : (Z, Y, X, 3) array, optional
        Stitched displacement field (in memory or on disk), µm.
    field_spacing : sequence of 3 float
        The field's grid spacing, µm.
    field_origin : sequence of 3 float, optional
        The field's voxel 0 position (the fixed origin), µm; default 0.

    Returns
    -------
    dict ``{"before": ..., "global": ..., "blocks": ...}`` of :func:`tre` results
    (``blocks`` only with a field).
    """
    errors = stage_errors(landmarks_fixed, landmarks_moving, affine, field, field_spacing,
                          field_origin=field_origin)
    return {stage: summary(d) for stage, d in errors.items()}
