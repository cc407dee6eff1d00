"""Inverse transform (moving -> fixed), blockwise by fixed-point iteration.

The forward transform is y = A @ (x + d(x)). With z = A^-1 y, the inverse is
x = z + e(z), where the inverse field e (on the fixed grid, µm, z,y,x) solves
e(z) = -d(z + e(z)). Each output chunk iterates that equation on its own
region plus a halo of the forward field, so jobs stay independent and memory
stays one chunk plus its halo. The inverse field lies on the forward field's grid
(voxel 0 at the fixed origin, ``attrs["origin"]``); regions are solved relative to
that voxel 0, and points are placed with the grids' origins.
"""

import numpy as np

from snakestream.fields.transform import inverse_displacement, sample_field
from snakestream.fields.warp import cast_to, sample_moving
from snakestream.grid.geometry import apply_affine, physical_grid
from snakestream.io.chunks import for_each_chunk
from snakestream.io.zarr_store import grid_origin


def _read_with_halo(field, start, stop, halo):
    lo = np.maximum(np.asarray(start) - halo, 0)
    hi = np.minimum(np.asarray(stop) + halo, field.shape[:3])
    return np.asarray(field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64), lo


def _sample(block, lo, spacing, points):
    """Field values at physical points, ``block`` being the field from voxel ``lo`` on."""
    flat = points.reshape(-1, 3) - np.asarray(lo) * spacing
    return sample_field(block, spacing, flat).reshape(points.shape)


def invert_region(field, start, stop, spacing, *, iterations=50, tol=1e-4):
    """Inverse field on one region of the fixed grid.

    Parameters
    ----------
    field : zarr array (Z, Y, X, 3)
        Forward displacement field d, µm, z, y, x.
    start, stop : sequences of 3 int
        Fixed voxels ``[start, stop)``, z, y, x.
    spacing : sequence of 3 float
        The field's grid spacing, µm.
    iterations, tol
        As in :func:`~snakestream.fields.transform.inverse_displacement` (µm).

    Returns
    -------
    e : (Z, Y, X, 3) float32
        Inverse displacement on the region, µm, z, y, x.
    residual : float
        max |e(z) + d(z + e(z))| after the last iteration, µm.
    """
    spacing = np.asarray(spacing, float)
    own, _ = _read_with_halo(field, start, stop, 0)
    halo = int(np.ceil(1.5 * np.abs(own).max() / spacing.min())) + 2
    block, lo = _read_with_halo(field, start, stop, halo)
    z = physical_grid(start, np.asarray(stop) - start, spacing)
    e = inverse_displacement(lambda p: _sample(block, lo, spacing, p), z, initial=-own,
                             iterations=iterations, tol=tol)
    residual = np.abs(e + _sample(block, lo, spacing, z + e)).max()
    return e.astype(np.float32), float(residual)


def write_inverse_slab(out, field, slab, iterations=50, tol=1e-4):
    """Fill one z slab of ``out`` with the inverse of ``field``.

    Parameters
    ----------
    out : zarr array (Z, Y, X, 3)
        The inverse field on the fixed grid, written in place (µm).
    field : zarr array (Z, Y, X, 3)
        Forward displacement field, same grid, with ``attrs["spacing"]`` (µm).
    slab : int
        z slab number (one chunk row of ``out``).
    iterations, tol
        As in :func:`invert_region`.

    Returns
    -------
    (count, residual) : (int, float)
        Chunks written, and the largest residual of any of them (µm).
    """
    spacing = np.asarray(field.attrs["spacing"], float)
    residuals = [0.0]

    def fill(start, stop):
        e, residual = invert_region(field, start, stop, spacing, iterations=iterations, tol=tol)
        residuals.append(residual)
        return e

    count = for_each_chunk(out, slab, fill)
    return count, max(residuals)


def _inverse_on_points(inverse, z):
    """Inverse field at many physical points (reads the bounding region once)."""
    spacing = np.asarray(inverse.attrs["spacing"], float)
    z = z - grid_origin(inverse.attrs)
    flat = z.reshape(-1, 3)
    lo = np.clip(np.floor(flat.min(0) / spacing).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(flat.max(0) / spacing).astype(int) + 2, inverse.shape[:3])
    if np.any(hi <= lo):
        return np.zeros_like(z)
    block = np.asarray(inverse[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64)
    return _sample(block, lo, spacing, z)


def apply_inverse(points, affine, inverse=None):
    """Moving -> fixed through the stored inverse field: ``x = z + e(z)``, ``z = A^-1 y``.

    Parameters
    ----------
    points : (..., 3) array
        Moving physical points y, µm, z, y, x.
    affine : (4, 4) array
        The forward fixed -> moving affine A, µm.
    inverse : zarr array (Z, Y, X, 3), optional
        Inverse field e (:func:`write_inverse_slab`) with ``attrs["spacing"]`` and
        ``attrs["origin"]`` (0 when absent); None for the inverse affine alone.

    Returns
    -------
    (..., 3) float64 fixed points, µm, z, y, x.
    """
    z = apply_affine(np.linalg.inv(affine), points)
    if inverse is not None:
        z = z + _inverse_on_points(inverse, z)
    return z


def warp_fixed_slab(out, slab, mov_spacing, affine, fix_vol, *, inverse=None, order=1,
                    mov_origin=None):
    """Resample the fixed volume onto one z slab of the moving grid (``out``, in place).

    Parameters
    ----------
    out, slab, order
        As in :func:`snakestream.fields.warp.warp_slab`, ``out`` lying on the moving grid.
    mov_spacing : sequence of 3 float
        Moving voxel size, µm, z, y, x.
    affine : (4, 4) array
        The forward fixed -> moving affine, µm.
    fix_vol : Volume
        The fixed volume, sampled at :func:`apply_inverse` of each voxel of ``out``.
    inverse : zarr array (Z, Y, X, 3), optional
        Inverse field; None for the inverse affine alone.
    mov_origin : sequence of 3 float, optional
        Moving voxel 0's position, µm, z, y, x (default 0).

    Returns
    -------
    int, the number of chunks written.
    """
    def fill(start, stop):
        y = physical_grid(start, stop - start, mov_spacing, origin=mov_origin)
        z = apply_inverse(y, affine, inverse)
        return cast_to(sample_moving(fix_vol, z, order), out.dtype)

    return for_each_chunk(out, slab, fill)
