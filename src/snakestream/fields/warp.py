"""Resample the moving image onto the fixed grid through ``[affine, deform]``, chunkwise.

Fixed voxel ``i`` is the physical point ``o_fix + i * s_fix``; its moving point
``p = A @ (x + d(x))`` is sampled at moving index ``(p - o_mov) / s_mov`` (origins
``o``, spacings ``s``, µm, z, y, x).
"""

import numpy as np
from scipy.ndimage import map_coordinates

from snakestream.fields.transform import apply_transform, sample_field
from snakestream.grid import crops
from snakestream.grid.geometry import physical_grid
from snakestream.io.chunks import for_each_chunk


def moving_points(start, shape, fix_spacing, affine, field=None, *, fix_origin=None):
    """Moving-space points of a region of the fixed grid: ``A @ (x + d(x))``.

    Parameters
    ----------
    start, shape : sequences of 3 int
        The region, fixed voxels, z, y, x.
    fix_spacing : sequence of 3 float
        Fixed voxel size, µm.
    affine : (4, 4) array
        Fixed -> moving affine, µm.
    field : (Z, Y, X, 3) array, optional
        d on the region (:func:`field_on_region`), µm; None for the affine alone.
    fix_origin : sequence of 3 float, optional
        Fixed voxel 0's position, µm (default 0).

    Returns
    -------
    (Z, Y, X, 3) float64 moving points, µm, z, y, x.
    """
    return apply_transform(affine, physical_grid(start, shape, fix_spacing, origin=fix_origin),
                           field)


def field_on_region(field, start, shape, fix_spacing):
    """Displacement on a region of the fixed grid from a stored field.

    The field's voxel 0 lies on fixed voxel 0 (its origin is the fixed origin), so
    this works in voxels of the two grids alone.

    Parameters
    ----------
    field : zarr array (Z, Y, X, 3)
        Displacements, µm, z, y, x, with ``attrs["spacing"]``: on the fixed grid (sliced)
        or coarser (``field_downsample``: read around the region and interpolated
        trilinearly).
    start, shape, fix_spacing
        The region of the fixed grid, as in :func:`moving_points`.

    Returns
    -------
    (Z, Y, X, 3) array of displacements on the region, µm.
    """
    spacing = np.asarray(field.attrs["spacing"], float)
    start, shape = np.asarray(start), np.asarray(shape)
    if np.allclose(spacing, fix_spacing):
        return np.asarray(field[tuple(slice(a, a + n) for a, n in zip(start, shape))])
    lo = np.floor(start * fix_spacing / spacing).astype(int)
    hi = np.minimum(np.ceil((start + shape - 1) * fix_spacing / spacing).astype(int) + 2,
                    field.shape[:3])
    block = np.asarray(field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64)
    pts = physical_grid(start, shape, fix_spacing) - lo * spacing
    return sample_field(block, spacing, pts.reshape(-1, 3)).reshape(tuple(shape) + (3,))


def sample_moving(mov_vol, points, order=1, cval=0):
    """Sample a volume at physical points, reading only the part they touch.

    Parameters
    ----------
    mov_vol : Volume
        The volume sampled (z, y, x, spacing and origin in µm).
    points : (Z, Y, X, 3) array
        Physical points in the volume's frame (its origin included), µm, z, y, x.
    order : int
        1 linear (intensities, float64 result), 0 nearest (labels keep their values
        and dtype).
    cval : number
        Value of points outside the volume.

    Returns
    -------
    (Z, Y, X) array of samples.
    """
    flat = points.reshape(-1, 3) - mov_vol.origin  # from here on, voxel 0 at 0 µm
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


def cast_to(values, dtype):
    """``values`` as ``dtype``; for an integer dtype rounded and clipped to its range first."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def warp_slab(out, slab, fix_spacing, affine, mov_vol, *, field=None, order=1, fix_origin=None):
    """Warp every output chunk of one z slab of ``out`` through ``[affine, field]``.

    Parameters
    ----------
    out : zarr array (Z, Y, X)
        Output on the fixed grid, written in place.
    slab : int
        z slab number (one chunk row).
    fix_spacing : sequence of 3 float
        Fixed voxel size, µm, z, y, x.
    affine : (4, 4) array
        Fixed -> moving affine, µm.
    mov_vol : Volume
        The moving-space volume to resample.
    field : zarr array (Z, Y, X, 3), optional
        Stitched displacement field (µm, on the fixed grid or coarser); None for the
        affine alone.
    order : int
        1 linear (intensities), 0 nearest (labels).
    fix_origin : sequence of 3 float, optional
        Fixed voxel 0's position, µm, z, y, x (default 0).

    Returns
    -------
    int, the number of chunks written.
    """
    def fill(start, stop):
        d = None if field is None else field_on_region(field, start, stop - start, fix_spacing)
        pts = moving_points(start, stop - start, fix_spacing, affine, d, fix_origin=fix_origin)
        return cast_to(sample_moving(mov_vol, pts, order), out.dtype)

    return for_each_chunk(out, slab, fill)
