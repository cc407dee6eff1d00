"""Global (whole-image, downsampled) alignment: rigid/affine steps -> one affine."""

import numpy as np

from snakestream.errors import InputError
from snakestream.grid.geometry import compose_affines, physical_grid, to_frames
from snakestream.io.pyramids import read_coarse
from snakestream.io.volumes import count_nonfinite, nonfinite_error
from snakestream.register.align import (GLOBAL_LOG_EVERY, Image, downsample_factors,
                                       in_local_frame, run_steps)
from snakestream.register.similarity import ncc_after_affine
from snakestream.register.steps import in_local_frames


def downsample_volume(vol, alignment_spacing, *, purpose="global stage", log=None):
    """A whole volume block-averaged toward ``alignment_spacing``, from its coarsest usable level.

    Parameters
    ----------
    vol : Volume
        z, y, x volume with spacing in µm (the configured, full level).
    alignment_spacing : float or None
        Target voxel size, µm (factors as :func:`~snakestream.register.align.downsample_factors`).
    purpose : str
        Who reads it, for the log line.
    log : callable, optional
        Called with one line naming the pyramid level read
        (:func:`~snakestream.io.pyramids.read_coarse`).

    Returns
    -------
    Image with float32 data, spacing about ``vol.spacing * factors`` (exactly, when
    the pyramid's levels divide the factors) and its origin at the centre of the
    first block (µm, in ``vol``'s physical frame: ``vol.origin`` plus the block's
    offset from voxel 0).
    """
    factors = downsample_factors(vol.spacing, alignment_spacing)
    coarse = read_coarse(vol, factors, purpose=purpose)
    if log is not None:
        log(coarse.message)
    if not np.isfinite(coarse.data).all():  # count the file's voxels, not the block means
        raise nonfinite_error(vol.path, count_nonfinite(vol), int(np.prod(vol.shape)),
                              what="voxels (full resolution)")
    return Image(coarse.data, coarse.spacing, vol.origin + coarse.offset)


def mask_on_image(mask_vol, image, *, log=None):
    """A mask volume (any resolution, same physical frame) as a boolean array on ``image``'s grid.

    The mask is block-averaged (from its coarsest usable pyramid level) to about
    ``image``'s spacing, thresholded at 0.5 and sampled at ``image``'s voxel
    centres (nearest voxel). ``log`` gets the line naming the level read.
    """
    from scipy.ndimage import map_coordinates

    factors = np.maximum(np.floor(image.spacing / mask_vol.spacing), 1).astype(int)
    coarse = read_coarse(mask_vol, factors, purpose="global stage mask")
    if log is not None:
        log(coarse.message)
    pts = physical_grid((0, 0, 0), image.data.shape, image.spacing, origin=image.origin)
    idx = ((pts.reshape(-1, 3) - mask_vol.origin - coarse.offset) / coarse.spacing).T
    return map_coordinates((coarse.data > 0.5).astype(np.uint8), idx, order=0, mode="nearest") \
        .reshape(image.data.shape).astype(bool)


def images_for(steps, vol, mask_vol, *, log=None):
    """One Image per distinct alignment_spacing among ``steps`` (dict keyed by spacing)."""
    out = {}
    for _, params in steps:
        key = params.get("alignment_spacing")
        if key not in out:
            image = downsample_volume(vol, key, log=log)
            if mask_vol is not None:
                image.mask = mask_on_image(mask_vol, image, log=log)
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
        As in :func:`~snakestream.register.align.run_steps`; ``log`` also gets one
        line per image and spacing naming the pyramid level read.

    Returns
    -------
    affine : (4, 4) float64
        Fixed -> moving physical affine, z, y, x, µm, in the volumes' frames (their
        origins included; the steps run in their local frames, see
        :func:`~snakestream.register.align.in_local_frame`).
    qcs : list of dict
        Per-step QC, with the normalised cross-correlation before and after each
        step (``ncc_before``, ``ncc_after``) measured at that step's resolution.
    """
    steps = in_local_frames(steps, fix_vol.origin, mov_vol.origin)
    fixes = {k: in_local_frame(image, fix_vol.origin)
             for k, image in images_for(steps, fix_vol, fix_mask_vol, log=log).items()}
    movs = {k: in_local_frame(image, mov_vol.origin)
            for k, image in images_for(steps, mov_vol, mov_mask_vol, log=log).items()}
    static, qcs = [], []
    for name, params in steps:
        key = params.get("alignment_spacing")
        fix, mov = fixes[key], movs[key]
        before = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
        result = run_steps([(name, params)], fix, mov, static=static, threads=threads, log=log,
                           log_every=GLOBAL_LOG_EVERY)[0]
        static.append(result)
        after = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
        result.qc["ncc_before"] = ncc_after_affine(fix, mov, before)
        result.qc["ncc_after"] = ncc_after_affine(fix, mov, after)
        qcs.append(result.qc)
    affine = compose_affines(*[s.parameters.reshape(4, 4) for s in static])
    return to_frames(affine, fix_vol.origin, mov_vol.origin), qcs
