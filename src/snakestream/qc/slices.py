"""Full-resolution orthogonal slices of a run for the QC report, read tile by tile.

The report shows, for a few positions along each axis, the fixed image and the moving
image pulled onto that fixed slice through each stage (no transform, the global affine,
``[affine, field]``), the displacement magnitude and the Jacobian determinant there, and
mask outlines. Only the shown tiles are read: a (1, Y, X) region of the fixed grid per
z slice (and likewise for y and x), never a whole volume.

Every point mapping goes through :func:`snakestream.fields.warp.moving_points`, every
read of a resampled volume through :func:`snakestream.fields.warp.sample_moving`, the
field through :func:`snakestream.fields.warp.field_on_region` and det J through
:func:`snakestream.fields.jacobian.jacobian_det`, as the warp and gather stages do.

Arrays are z, y, x; spacings in µm, z, y, x. A slice's 2-D image has the two other axes
in order: a z slice is (y, x), a y slice (z, x), an x slice (z, y).
"""

import numpy as np

from snakestream.fields.jacobian import jacobian_det
from snakestream.fields.warp import field_on_region, moving_points, sample_moving
from snakestream.grid.geometry import physical_grid
from snakestream.register.similarity import ncc

AXES = "zyx"
STAGES = ("before", "global", "blocks")
STAGE_LABELS = {"before": "before", "global": "after global", "blocks": "after blocks"}
LOCAL_WINDOW = 32  # pixels: side of the windows of the local NCC


def slice_positions(n, count):
    """Up to ``count`` evenly spread slice indices in ``[0, n)``, away from the faces.

    Parameters
    ----------
    n : int
        Voxels along the axis.
    count : int
        Most positions wanted (the report's slider stops).

    Returns
    -------
    list of distinct int, increasing.
    """
    if n <= count:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, count + 2)[1:-1]})


def tile_window(n, tile):
    """(start, size) of a centred window of at most ``tile`` voxels along an axis of ``n``."""
    size = min(int(n), int(tile))
    return (int(n) - size) // 2, size


def slice_region(shape, axis, index, *, tile):
    """Region (start, shape), fixed voxels z, y, x, of the shown tile of one slice.

    Parameters
    ----------
    shape : sequence of 3 int
        Fixed grid shape, z, y, x.
    axis : int
        0, 1, 2 for a z, y or x slice.
    index : int
        Slice index along ``axis``.
    tile : int
        Longest in-plane side, voxels: larger slices show their centred tile.
    """
    start, size = [], []
    for a, n in enumerate(shape):
        lo, m = (index, 1) if a == axis else tile_window(n, tile)
        start.append(lo)
        size.append(m)
    return np.array(start), np.array(size)


def outline(mask):
    """Boundary pixels of a 2-D boolean mask (inside, with a 4-neighbour outside)."""
    mask = np.asarray(mask, bool)
    pad = np.pad(mask, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return mask & ~inner


def _stage_affines(affine, field):
    stages = {"before": (np.eye(4), False), "global": (np.asarray(affine, float), False)}
    if field is not None:
        stages["blocks"] = (np.asarray(affine, float), True)
    return stages


def field_maps(field, start, shape, axis, fix_spacing, fix_shape):
    """|d| (µm) and det(I + ∇d) on one slice tile, each a 2-D float array.

    The field is read on the tile and one voxel either side along ``axis`` (inside
    the fixed grid of shape ``fix_shape``), so the derivative across the slice is a
    central difference, as inside the volume.
    """
    lo, hi = np.array(start), np.array(start) + shape
    lo[axis], hi[axis] = max(start[axis] - 1, 0), min(start[axis] + 2, fix_shape[axis])
    thick = field_on_region(field, lo, hi - lo, fix_spacing)
    det = jacobian_det(thick, fix_spacing)
    take = [slice(None)] * 3
    take[axis] = int(start[axis] - lo[axis])
    return np.linalg.norm(thick[tuple(take)], axis=-1), det[tuple(take)]


def read_tile(fix_vol, mov_vol, affine, start, shape, axis, *, field=None, fix_mask=None,
              mov_mask=None):
    """Everything the report shows on one slice tile.

    Parameters
    ----------
    fix_vol, mov_vol : snakestream.io.volumes.Volume
        Fixed and moving images.
    affine : (4, 4) array
        Global fixed -> moving affine, µm.
    start, shape : (3,) int arrays
        The tile, fixed voxels, z, y, x (:func:`slice_region`); shape 1 along ``axis``.
    axis : int
        The slice's normal axis.
    field : zarr array (Z, Y, X, 3), optional
        Stitched displacement field (µm, ``attrs["spacing"]``); None without blocks.
    fix_mask, mov_mask : Volume, optional
        Masks in their image's frame (:func:`snakestream.grid.inputs.open_mask`).

    Returns
    -------
    dict of 2-D arrays: ``fixed``; ``stages`` {stage: moving samples}; ``fixed_outline``
    and ``moving_outline`` {stage: bool} (None without the mask); ``dmag`` (µm) and
    ``detj`` (None without a field); ``fixed_mask`` (bool or None).
    """
    plane = lambda a: np.squeeze(np.asarray(a), axis=axis)  # noqa: E731
    region = tuple(slice(int(a), int(a + n)) for a, n in zip(start, shape))
    out = {"fixed": plane(fix_vol.read(region)).astype(np.float32), "stages": {},
           "moving_outline": None, "fixed_outline": None, "fixed_mask": None,
           "dmag": None, "detj": None}
    d = field_on_region(field, start, shape, fix_vol.spacing) if field is not None else None
    origin = getattr(fix_vol, "origin", None)
    if fix_mask is not None:
        inside = sample_moving(fix_mask, physical_grid(start, shape, fix_vol.spacing,
                                                       origin=origin), order=0)
        out["fixed_mask"] = plane(inside) > 0
        out["fixed_outline"] = outline(out["fixed_mask"])
    if mov_mask is not None:
        out["moving_outline"] = {}
    for stage, (a, with_field) in _stage_affines(affine, field).items():
        points = moving_points(start, shape, fix_vol.spacing, a, d if with_field else None,
                               fix_origin=origin)
        out["stages"][stage] = plane(sample_moving(mov_vol, points)).astype(np.float32)
        if mov_mask is not None:
            out["moving_outline"][stage] = outline(plane(sample_moving(mov_mask, points,
                                                                        order=0)) > 0)
    if field is not None:
        out["dmag"], out["detj"] = field_maps(field, start, shape, axis, fix_vol.spacing,
                                               fix_vol.shape)
    return out


def read_slices(fix_vol, mov_vol, affine, *, field=None, fix_mask=None, mov_mask=None,
                count=9, tile=256):
    """The report's tiles: ``{axis name: [(slice index, read_tile result), ...]}``.

    Parameters
    ----------
    fix_vol, mov_vol, affine, field, fix_mask, mov_mask
        As in :func:`read_tile`.
    count : int, default 9
        Slider positions per axis (:func:`slice_positions`).
    tile : int, default 256
        Longest in-plane side of a tile, voxels (:func:`slice_region`).
    """
    views = {}
    for axis, name in enumerate(AXES):
        views[name] = []
        for index in slice_positions(fix_vol.shape[axis], count):
            start, shape = slice_region(fix_vol.shape, axis, index, tile=tile)
            views[name].append((index, read_tile(fix_vol, mov_vol, affine, start, shape, axis,
                                                 field=field, fix_mask=fix_mask,
                                                 mov_mask=mov_mask)))
    return views


def intensity_window(images, percentiles=(1.0, 99.5)):
    """(low, high) robust window shared by a list of 2-D images (finite values)."""
    values = np.concatenate([np.asarray(i, float).ravel() for i in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def to_uint8(image, window):
    """A 2-D image scaled to uint8 (0..255) between ``window`` = (low, high)."""
    lo, hi = window
    return np.round(255 * np.clip((np.asarray(image, float) - lo) / (hi - lo), 0, 1)).astype(
        np.uint8)


def local_ncc(fixed, moved, mask=None, *, window=LOCAL_WINDOW):
    """NCC in each ``window`` x ``window`` tile of a 2-D pair with signal in both.

    Returns
    -------
    list of float, one per window (windows where either image is constant, or that
    lie outside ``mask``, are left out).
    """
    values = []
    for r in range(0, fixed.shape[0], window):
        for c in range(0, fixed.shape[1], window):
            a = fixed[r:r + window, c:c + window]
            b = moved[r:r + window, c:c + window]
            m = None if mask is None else mask[r:r + window, c:c + window]
            if m is not None and m.sum() < 0.5 * m.size:
                continue
            if a.size < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
                continue
            values.append(ncc(a, b, m))
    return values


def stage_ncc(views):
    """NCC per stage over every shown tile: whole (all pixels, inside the fixed mask
    when there is one) and local (median of :func:`local_ncc` windows).

    Returns
    -------
    dict ``{stage: {"whole": float, "local_median": float, "local_p10": float,
    "windows": int}}``.
    """
    tiles = [t for entries in views.values() for _, t in entries]
    out = {}
    for stage in tiles[0]["stages"]:
        fixed = np.concatenate([t["fixed"].ravel() for t in tiles])
        moved = np.concatenate([t["stages"][stage].ravel() for t in tiles])
        masks = [t["fixed_mask"] for t in tiles]
        mask = None if masks[0] is None else np.concatenate([m.ravel() for m in masks])
        local = [v for t in tiles
                 for v in local_ncc(t["fixed"], t["stages"][stage], t["fixed_mask"])]
        out[stage] = {"whole": ncc(fixed, moved, mask),
                      "local_median": float(np.median(local)) if local else float("nan"),
                      "local_p10": float(np.percentile(local, 10)) if local else float("nan"),
                      "windows": len(local)}
    return out
