"""Global (whole-image, downsampled) alignment: rigid/affine steps -> one affine."""

import numpy as np

from snakestream.errors import InputError
from snakestream.grid.geometry import compose_affines, physical_grid
from snakestream.io.downsample import read_downsampled
from snakestream.io.volumes import require_finite
from snakestream.register.align import Image, downsample_factors, run_steps
from snakestream.register.similarity import ncc_after_affine


def downsample_volume(vol, alignment_spacing):
    """A whole volume block-averaged toward ``alignment_spacing``.

    Parameters
    ----------
    vol : Volume
        z, y, x volume with spacing in µm.
    alignment_spacing : float or None
        Target voxel size, µm (factors as :func:`~snakestream.register.align.downsample_factors`).

    Returns
    -------
    Image with float32 data, spacing ``vol.spacing * factors`` and its origin at the
    centre of the first block (µm).
    """
    factors = downsample_factors(vol.spacing, alignment_spacing)
    data = read_downsampled(vol, factors)
    require_finite(data, vol.path)
    origin = (factors - 1) / 2 * vol.spacing
    return Image(data, vol.spacing * factors, origin)


def mask_on_image(mask_vol, image):
    """A mask volume (any resolution, same physical frame) as a boolean array on ``image``'s grid."""
    from scipy.ndimage import map_coordinates

    factors = np.maximum(np.floor(image.spacing / mask_vol.spacing), 1).astype(int)
    small = read_downsampled(mask_vol, factors) > 0.5
    small_spacing = mask_vol.spacing * factors
    small_origin = (factors - 1) / 2 * mask_vol.spacing
    pts = physical_grid((0, 0, 0), image.data.shape, image.spacing) + image.origin
    idx = ((pts.reshape(-1, 3) - small_origin) / small_spacing).T
    return map_coordinates(small.astype(np.uint8), idx, order=0, mode="nearest") \
        .reshape(image.data.shape).astype(bool)


def images_for(steps, vol, mask_vol):
    """One Image per distinct alignment_spacing among ``steps`` (dict keyed by spacing)."""
    out = {}
    for _, params in steps:
        key = params.get("alignment_spacing")
        if key not in out:
            image = downsample_volume(vol, key)
            if mask_vol is not None:
                image.mask = mask_on_image(mask_vol, image)
                if not image.mask.any():
                    raise InputError(mask_vol.path, "mask is empty (no voxel above 0.5).",
                                     "check the mask file, or remove it from the config.")
            out[key] = image
    return out


def global_align(steps, fix_vol, mov_vol, fix_mask_vol=None, mov_mask_vol=None, *,
                 threads=1, log=print):
    """Run the global steps on whole volumes, each at its own ``alignment_spacing``.

    Parameters
    ----------
    steps : list of (name, dict)
        Normalised rigid/affine/ransac/random steps (:func:`~snakestream.register.steps.normalize_steps`).
    fix_vol, mov_vol : Volume
        Fixed and moving volumes (z, y, x, spacing in µm).
    fix_mask_vol, mov_mask_vol : Volume, optional
        Masks in the same physical frames (any resolution).
    threads, log
        As in :func:`~snakestream.register.align.run_steps`.

    Returns
    -------
    affine : (4, 4) float64
        Fixed -> moving physical affine, z, y, x, µm.
    qcs : list of dict
        Per-step QC, with the normalised cross-correlation before and after each
        step (``ncc_before``, ``ncc_after``) measured at that step's resolution.
    """
    fixes = images_for(steps, fix_vol, fix_mask_vol)
    movs = images_for(steps, mov_vol, mov_mask_vol)
    static, qcs = [], []
    for name, params in steps:
        key = params.get("alignment_spacing")
        fix, mov = fixes[key], movs[key]
        before = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
        result = run_steps([(name, params)], fix, mov, static=static, threads=threads, log=log)[0]
        static.append(result)
        after = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
        result.qc["ncc_before"] = ncc_after_affine(fix, mov, before)
        result.qc["ncc_after"] = ncc_after_affine(fix, mov, after)
        qcs.append(result.qc)
    affine = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
    return affine, qcs
