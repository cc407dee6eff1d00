"""The ``ransac`` and ``random`` steps: :mod:`features` applied to :class:`Image` records.

The feature functions work with origin-0 images; here each result is moved
into the images' physical frames (block crops have non-zero origins).

Both steps report the same metric, ``-NCC`` of the fixed image and the moving
image pulled through the transform (:func:`features.ncc_score`, a seeded
subset of fixed voxels), before and after, so a feature step can be judged,
and fall back, like a registration step.
"""

import numpy as np

from snakestream.register import features


def _shift(offset):
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def to_frames(local, fix_origin, mov_origin):
    """Origin-0 affine -> affine between the images' physical frames (µm)."""
    return _shift(mov_origin) @ local @ _shift(-np.asarray(fix_origin))


def to_local(total, fix_origin, mov_origin):
    """Inverse of :func:`to_frames`."""
    return _shift(-np.asarray(mov_origin)) @ total @ _shift(fix_origin)


def _masks(fix, mov):
    return {"fix_mask": fix.mask, "mov_mask": mov.mask}


def _ransac(params, fix, mov, prior, seed):
    local = features.ransac_align(
        fix.data, mov.data, fix.spacing, mov.spacing, params["blob_radius"],
        match_threshold=params["match_threshold"],
        align_threshold_um=params["align_threshold"], nspots=params["nspots"], seed=seed,
        initial=to_local(prior, fix.origin, mov.origin),
        scale_range=(1 / params["max_scale_change"], params["max_scale_change"]),
        **_masks(fix, mov))
    return to_frames(local, fix.origin, mov.origin)


def _random(params, fix, mov, prior, seed):
    score = features.ncc_score(fix.data, mov.data, fix.spacing, mov.spacing, seed=seed)
    local, _ = features.random_affine_search(
        fix.data, mov.data, fix.spacing, mov.spacing, score,
        iterations=params["random_iterations"], max_translation_um=params["max_translation"],
        max_rotation_rad=params["max_rotation"] if params["max_rotation"] is not None else 0.25,
        max_scale=params["max_scale"] if params["max_scale"] is not None else 0.1,
        max_shear=params["max_shear"] if params["max_shear"] is not None else 0.05,
        seed=seed, initial=to_local(prior, fix.origin, mov.origin))
    return to_frames(local, fix.origin, mov.origin)


def phase_start(fix, mov):
    """Translation (4x4, fixed -> moving frames) from phase correlation of the two images."""
    local = features.phase_correlation_translation(fix.data, mov.data, fix.spacing, mov.spacing)
    return to_frames(local, fix.origin, mov.origin)


def run_feature_step(name, params, fix, mov, prior, *, seed, qc=None):
    """Total fixed -> moving affine found by a ``ransac`` or ``random`` step.

    Parameters
    ----------
    name : {'ransac', 'random'}
    params : dict
        Normalised step settings.
    fix, mov : Image
        Images at the step's alignment spacing (µm, z,y,x).
    prior : (4, 4) array
        Fixed -> moving affine already found (µm); the step starts from it.
    seed : int
        Seed for RANSAC sampling, the random search and the metric's voxel subset.
    qc : dict, optional
        Filled with ``metric`` ('-NCC'), ``metric_before`` (at ``prior``) and
        ``metric_after`` (at the result), lower is better.

    Returns
    -------
    (4, 4) float64 affine, fixed -> moving physical frames (µm).
    """
    total = {"ransac": _ransac, "random": _random}[name](params, fix, mov, prior, int(seed))
    if qc is not None:
        score = features.ncc_score(fix.data, mov.data, fix.spacing, mov.spacing, seed=int(seed))
        qc.update(metric="-NCC",
                  metric_before=round(float(score(to_local(prior, fix.origin, mov.origin))), 5),
                  metric_after=round(float(score(to_local(total, fix.origin, mov.origin))), 5))
    return total
