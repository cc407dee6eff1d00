"""Which part of each volume a block (or an output chunk) needs.

A block job reads only its fixed region and the moving region that the
global affine maps it to, grown by a margin for local motion. Physical points
include the volumes' origins (voxel ``i`` at ``origin + i * spacing``).
"""

import numpy as np

from snakestream.grid.geometry import apply_affine
from snakestream.grid.blocks import nearest_voxel


def region_corners(start, stop, spacing, *, origin=None):
    """The 8 corner voxel centres of ``[start, stop)`` in µm (z,y,x), on a grid whose
    voxel 0 sits at ``origin`` (µm, z,y,x; default 0)."""
    origin = np.zeros(3) if origin is None else np.asarray(origin, float)
    lo = origin + np.asarray(start, float) * spacing
    hi = origin + (np.asarray(stop, float) - 1) * spacing
    pick = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    return np.where(pick == 0, lo, hi)


def bounding_region(points, spacing, shape, margin=0.0, *, origin=None):
    """Voxel slices (clipped) covering physical ``points`` grown by ``margin`` µm, on a
    grid of ``shape`` whose voxel 0 sits at ``origin`` (µm, z,y,x; default 0).

    Returns None when the region falls entirely outside the volume.
    """
    points = np.asarray(points, float)
    if origin is not None:
        points = points - np.asarray(origin, float)
    margin = np.broadcast_to(np.asarray(margin, float), (3,))
    lo = np.floor((points.min(axis=0) - margin) / spacing).astype(int)
    hi = np.ceil((points.max(axis=0) + margin) / spacing).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def moving_region(fix_slices, fix_vol, affine, mov_vol, margin):
    """Slices of ``mov_vol`` that ``affine`` maps a region of ``fix_vol`` into, plus ``margin`` µm.

    Both volumes' ``shape``, ``spacing`` and ``origin`` (µm, z,y,x) place the grids.
    """
    start = [s.start for s in fix_slices]
    stop = [s.stop for s in fix_slices]
    corners = apply_affine(affine, region_corners(start, stop, np.asarray(fix_vol.spacing),
                                                  origin=fix_vol.origin))
    return bounding_region(corners, np.asarray(mov_vol.spacing), mov_vol.shape, margin,
                           origin=mov_vol.origin)


def default_margin(fix_slices, fix_spacing):
    """Default local-motion margin: a quarter of the block region's extent (µm)."""
    extent = np.array([s.stop - s.start for s in fix_slices]) * np.asarray(fix_spacing)
    return 0.25 * extent


def read_on_grid(volume, start, shape, spacing):
    """Sample ``volume`` (any grid, same physical frame) on a region of another grid.

    Both grids' voxel 0 share one position (a mask lies on its image:
    :func:`~snakestream.grid.inputs.open_mask`), so only indices and spacings matter.

    Used for masks stored at a different resolution: nearest voxel, edges
    extended (:func:`snakestream.grid.blocks.nearest_voxel`, as block selection). Only
    the part of ``volume`` under the region is read. Both grids are axis-aligned,
    so the nearest voxel is found axis by axis (plain NumPy: a block job does not
    pay for importing scipy.ndimage).

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The source grid (``shape``, ``spacing`` in µm z,y,x, ``read(slices)``).
    start, shape : sequence of 3 int
        First voxel and size (z,y,x) of the region on the target grid.
    spacing : sequence of 3 float
        Target grid spacing, µm, z,y,x.

    Returns
    -------
    ndarray of ``shape``, ``volume``'s dtype.
    """
    spacing = np.asarray(spacing, float)
    stop = np.asarray(start) + np.asarray(shape)
    corners = region_corners(start, stop, spacing)
    region = bounding_region(corners, volume.spacing, volume.shape, volume.spacing)
    if region is None:
        return np.zeros(shape, dtype=np.uint8)
    if np.allclose(volume.spacing, spacing) and np.all(np.asarray(volume.shape) >= stop):
        return volume.read(tuple(slice(int(a), int(b)) for a, b in zip(start, stop)))
    data = volume.read(region)
    index = [nearest_voxel(start[a] + np.arange(shape[a]), spacing[a], volume.spacing[a],
                           volume.shape[a]) - sl.start for a, sl in enumerate(region)]
    return data[np.ix_(*[np.clip(i, 0, n - 1) for i, n in zip(index, data.shape)])]
