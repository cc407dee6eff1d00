"""The ``ransac`` and ``random`` steps: :mod:`features` applied to :class:`Image` records.

The feature functions work with origin-0 images; here each result is moved
into the images' physical frames (block crops have non-zero origins) with
:func:`~snakestream.grid.geometry.to_frames`.

Both steps report the same metric, ``-NCC`` of the fixed image and the moving
image pulled through the transform (:func:`features.ncc_score`, a seeded
subset of fixed voxels), before and after, so a feature step can be judged,
and fall back, like a registration step.
"""

import time

import numpy as np

from snakestream.grid.geometry import to_frames, to_local
from snakestream.register import features
from snakestream.register.steps import CC_RADIUS_VOX


def _masks(fix, mov):
    return {"fix_mask": fix.mask, "mov_mask": mov.mask}


def blob_scales_um(params, spacing):
    """A ransac step's blob and context sizes in µm on an image of ``spacing``.

    bigstream's voxel keys are voxels of the image at the step's alignment spacing:
    ``blob_sizes`` [min, max] radius, ``num_sigma = min(max - min, num_sigma_max)``
    radii between them, ``cc_radius`` the descriptor half-width and the border kept
    free of spots. snakestream's ``blob_radius`` (µm) is one radius with a context of
    three radii and no border, unless ``cc_radius`` is given.

    Parameters
    ----------
    params : dict
        Normalised ransac step.
    spacing : (3,) float
        Voxel size of the fixed image at the step's alignment spacing, µm, z, y, x.

    Returns
    -------
    dict of :func:`features.ransac_align` keywords: ``blob_radius_um``,
    ``max_radius_um``, ``num_scales``, ``context_radius_um`` and ``exclude_border_um``
    (µm, (3,) arrays where voxel-based; per axis, so anisotropic voxels keep
    bigstream's voxel meaning).
    """
    spacing = np.asarray(spacing, dtype=float)
    cc = params["cc_radius"]
    if params["blob_sizes"] is None:
        radius = params["blob_radius"]
        return {"blob_radius_um": radius, "max_radius_um": None, "num_scales": 1,
                "context_radius_um": 3.0 * radius if cc is None else cc * spacing,
                "exclude_border_um": None if cc is None else cc * spacing}
    low, high = params["blob_sizes"]
    cc = CC_RADIUS_VOX if cc is None else cc
    return {"blob_radius_um": low * spacing, "max_radius_um": high * spacing,
            "num_scales": min(int(high - low), params["num_sigma_max"]),
            "context_radius_um": cc * spacing, "exclude_border_um": cc * spacing}


def _ransac(params, fix, mov, prior, seed, log=None):
    local = features.ransac_align(
        fix.data, mov.data, fix.spacing, mov.spacing,
        **blob_scales_um(params, fix.spacing),
        match_threshold=params["match_threshold"],
        align_threshold_um=params["align_threshold"], nspots=params["nspots"], seed=seed,
        initial=to_local(prior, fix.origin, mov.origin),
        scale_range=(1 / params["max_scale_change"], params["max_scale_change"]),
        min_points=(params["fix_spots_count_threshold"], params["mov_spots_count_threshold"]),
        min_matches=params["point_matches_threshold"],
        max_match_distance_um=params["max_spot_match_distance"],
        diagonal_constraint=params["diagonal_constraint"],
        fix_threshold=params["fix_spot_detection_kwargs"].get("threshold"),
        mov_threshold=params["mov_spot_detection_kwargs"].get("threshold"), log=log,
        **_masks(fix, mov))
    return to_frames(local, fix.origin, mov.origin)


def _random(params, fix, mov, prior, seed, log=None):
    """Best of the random search (bigstream's pipeline also uses the best of ``nreturn``)."""
    if log is not None:
        log(f"random: searching {params['random_iterations']} candidate affines")
    score = features.ncc_score(fix.data, mov.data, fix.spacing, mov.spacing, seed=seed)
    local, _ = features.random_affine_search(
        fix.data, mov.data, fix.spacing, mov.spacing, score,
        iterations=params["random_iterations"], max_translation_um=params["max_translation"],
        max_rotation_rad=_bound(params, "max_rotation"), max_scale=_bound(params, "max_scale"),
        max_shear=_bound(params, "max_shear"), seed=seed,
        initial=to_local(prior, fix.origin, mov.origin))
    return to_frames(local, fix.origin, mov.origin)


# bounds of an unset (null) random-search parameter: snakestream searches a little
# (bigstream would not search it at all)
RANDOM_BOUNDS = {"max_rotation": 0.25, "max_scale": 1.1, "max_shear": 0.05}


def _bound(params, key):
    return RANDOM_BOUNDS[key] if params[key] is None else params[key]


def phase_start(fix, mov):
    """Translation (4x4, fixed -> moving frames) from phase correlation of the two images."""
    local = features.phase_correlation_translation(fix.data, mov.data, fix.spacing, mov.spacing)
    return to_frames(local, fix.origin, mov.origin)


def run_feature_step(name, params, fix, mov, prior, *, seed, qc=None, log=None):
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
    log : callable, optional
        Receives a line as each stage starts or ends (spots, matches, fit, scoring).

    Returns
    -------
    (4, 4) float64 affine, fixed -> moving physical frames (µm).
    """
    t0 = time.perf_counter()
    total = {"ransac": _ransac, "random": _random}[name](params, fix, mov, prior, int(seed),
                                                         log)
    if log is not None:
        log(f"{name}: affine found at {time.perf_counter() - t0:.1f} s; scoring -NCC")
    if qc is not None:
        score = features.ncc_score(fix.data, mov.data, fix.spacing, mov.spacing, seed=int(seed))
        qc.update(metric="-NCC",
                  metric_before=round(float(score(to_local(prior, fix.origin, mov.origin))), 5),
                  metric_after=round(float(score(to_local(total, fix.origin, mov.origin))), 5))
    return total
