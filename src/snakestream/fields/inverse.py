"""Inverse transform (moving -> fixed), blockwise by fixed-point iteration.

The forward transform is y = A @ (x + d(x)). With z = A^-1 y, the inverse is
x = z + e(z), where the inverse field e (on the fixed grid, µm, z,y,x) solves
e(z) = -d(z + e(z)). Each output chunk iterates that equation on its own
region plus a halo of the forward field, so jobs stay independent and memory
stays one chunk plus its halo.
"""

import numpy as np
from snakestream.fields import transform as tf
from snakestream.fields.stitch import slab_bounds
from snakestream.io.chunks import chunk_starts
from snakestream.fields.warp import _cast, sample_moving


def _read_with_halo(field, start, stop, halo):
    lo = np.maximum(np.asarray(start) - halo, 0)
    hi = np.minimum(np.asarray(stop) + halo, field.shape[:3])
    return np.asarray(field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64), lo


def _sample(block, lo, spacing, points):
    """Field values at physical points, ``block`` being the field from voxel ``lo`` on."""
    flat = points.reshape(-1, 3) - np.asarray(lo) * spacing
    return tf.sample_field(block, spacing, flat).reshape(points.shape)


def invert_region(field, start, stop, spacing, iterations=50, tol=1e-4):
    """Inverse field e on fixed voxels ``[start, stop)``; returns ``(e, max residual µm)``.

    The residual is max |e(z) + d(z + e(z))| after the last iteration.
    """
    spacing = np.asarray(spacing, float)
    own, _ = _read_with_halo(field, start, stop, 0)
    halo = int(np.ceil(1.5 * np.abs(own).max() / spacing.min())) + 2
    block, lo = _read_with_halo(field, start, stop, halo)
    z = tf.physical_grid(start, np.asarray(stop) - start, spacing)
    e = -own
    for _ in range(iterations):
        new = -_sample(block, lo, spacing, z + e)
        change = np.abs(new - e).max()
        e = new
        if change < tol:
            break
    residual = np.abs(e + _sample(block, lo, spacing, z + e)).max()
    return e.astype(np.float32), float(residual)


def write_inverse_slab(out, field, slab, iterations=50, tol=1e-4):
    """Fill one z slab of ``out`` (zarr, Z,Y,X,3) with the inverse of ``field``.

    Returns the number of chunks and the largest residual (µm).
    """
    spacing = np.asarray(field.attrs["spacing"], float)
    shape, chunks = out.shape[:3], out.chunks[:3]
    z0, z1 = slab_bounds(shape, chunks, slab)
    count, worst = 0, 0.0
    for start in chunk_starts((z0, 0, 0), (z1,) + tuple(shape[1:]), chunks):
        stop = np.minimum(start + chunks, shape)
        e, residual = invert_region(field, start, stop, spacing, iterations, tol)
        out[tuple(slice(a, b) for a, b in zip(start, stop))] = e
        count, worst = count + 1, max(worst, residual)
    return count, worst


def fixed_points(moving_points, affine, inverse=None):
    """Moving -> fixed (µm) through the inverse: z = A^-1 y, x = z + e(z)."""
    z = tf.apply_affine(np.linalg.inv(affine), np.asarray(moving_points, float).reshape(-1, 3))
    if inverse is not None:
        z = z + tf.sample_zarr_field(inverse, inverse.attrs["spacing"], z)
    return z.reshape(np.shape(moving_points))


def _inverse_on_points(inverse, z):
    """Inverse field at many points (reads the bounding region once)."""
    spacing = np.asarray(inverse.attrs["spacing"], float)
    flat = z.reshape(-1, 3)
    lo = np.clip(np.floor(flat.min(0) / spacing).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(flat.max(0) / spacing).astype(int) + 2, inverse.shape[:3])
    if np.any(hi <= lo):
        return np.zeros_like(z)
    block = np.asarray(inverse[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64)
    return _sample(block, lo, spacing, z)


def warp_fixed_slab(out, slab, mov_spacing, affine, fix_vol, inverse=None, order=1):
    """Resample the fixed volume onto one z slab of the moving grid (zarr ``out``)."""
    shape, chunks = out.shape, out.chunks
    z0, z1 = slab_bounds(shape, chunks, slab)
    inv_affine = np.linalg.inv(affine)
    count = 0
    for start in chunk_starts((z0, 0, 0), (z1,) + tuple(shape[1:]), chunks):
        stop = np.minimum(start + chunks, shape)
        y = tf.physical_grid(start, stop - start, mov_spacing)
        z = y @ inv_affine[:3, :3].T + inv_affine[:3, 3]
        if inverse is not None:
            z = z + _inverse_on_points(inverse, z)
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        out[sl] = _cast(sample_moving(fix_vol, z, order), out.dtype)
        count += 1
    return count
