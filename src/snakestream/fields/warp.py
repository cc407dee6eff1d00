"""Resample the moving image onto the fixed grid through ``[affine, deform]``, chunkwise."""

import numpy as np
from scipy.ndimage import map_coordinates

from snakestream.grid import crops
from snakestream.fields import transform as tf
from snakestream.fields.stitch import slab_bounds
from snakestream.io.chunks import chunk_starts


def moving_points(start, shape, fix_spacing, affine, field=None):
    """Moving-space points (µm, (Z,Y,X,3)) of a fixed region: A @ (x + d(x))."""
    x = tf.physical_grid(start, shape, fix_spacing)
    if field is not None:
        x = x + field
    return x @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def field_on_region(field, start, shape, fix_spacing):
    """Displacement (Z,Y,X,3 µm) on a region of the fixed grid from a stored field.

    A field on the fixed grid is sliced; a coarser field (``field_downsample``) is
    read around the region and interpolated trilinearly.
    """
    spacing = np.asarray(field.attrs["spacing"], float)
    start, shape = np.asarray(start), np.asarray(shape)
    if np.allclose(spacing, fix_spacing):
        return np.asarray(field[tuple(slice(a, a + n) for a, n in zip(start, shape))])
    lo = np.floor(start * fix_spacing / spacing).astype(int)
    hi = np.minimum(np.ceil((start + shape - 1) * fix_spacing / spacing).astype(int) + 2,
                    field.shape[:3])
    block = np.asarray(field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64)
    pts = tf.physical_grid(start, shape, fix_spacing) - lo * spacing
    return tf.sample_field(block, spacing, pts.reshape(-1, 3)).reshape(tuple(shape) + (3,))


def sample_moving(mov_vol, points, order=1, cval=0):
    """Sample the moving volume at physical points, reading only the part they touch.

    ``order`` 1 is linear (intensities), 0 nearest (labels keep their values).
    Points outside the moving image get ``cval``.
    """
    flat = points.reshape(-1, 3)
    out = np.full(flat.shape[0], cval, dtype=np.float64 if order else mov_vol.dtype)
    region = crops.bounding_region(flat, mov_vol.spacing, mov_vol.shape, mov_vol.spacing)
    if region is None:
        return out.reshape(points.shape[:3])
    data = mov_vol.read(region)
    offset = np.array([s.start for s in region]) * mov_vol.spacing
    idx = ((flat - offset) / mov_vol.spacing).T
    inside = np.all((flat >= -0.5 * mov_vol.spacing) &
                    (flat <= (np.array(mov_vol.shape) - 0.5) * mov_vol.spacing), axis=1)
    values = map_coordinates(data, idx[:, inside], order=order, mode="nearest")
    out[inside] = values
    return out.reshape(points.shape[:3])


def _cast(values, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def warp_slab(out, slab, fix_spacing, affine, mov_vol, field=None, order=1):
    """Warp every output chunk of one z slab of ``out`` (a zarr array on the fixed grid).

    ``field`` is the stitched displacement array (zarr, Z,Y,X,3) or None for
    affine-only. Returns the number of chunks written.
    """
    shape, chunks = out.shape, out.chunks
    z0, z1 = slab_bounds(shape, chunks, slab)
    count = 0
    for start in chunk_starts((z0, 0, 0), (z1,) + tuple(shape[1:]), chunks):
        stop = np.minimum(start + chunks, shape)
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        d = None if field is None else field_on_region(field, start, stop - start, fix_spacing)
        pts = moving_points(start, stop - start, fix_spacing, affine, d)
        out[sl] = _cast(sample_moving(mov_vol, pts, order), out.dtype)
        count += 1
    return count
