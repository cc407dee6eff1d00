"""Coordinate geometry shared by every layer: affines on points, voxel grids in µm.

Pure NumPy, no I/O. Points are ``(..., 3)`` arrays of physical coordinates in µm,
z, y, x; voxel index ``i`` of a grid sits at ``origin + i * spacing`` (the origin,
voxel 0's centre, is the volume's; 0 when not given). An affine is a 4x4 matrix
mapping fixed physical coordinates (with the fixed origin) to moving ones (with the
moving origin).
"""

import numpy as np


def apply_affine(affine, points):
    """Map points through a 4x4 affine.

    Parameters
    ----------
    affine : (4, 4) array
        Fixed -> moving physical affine (µm, z, y, x).
    points : (..., 3) array
        Physical points, µm, z, y, x.

    Returns
    -------
    (..., 3) float64 array ``A[:3, :3] @ x + A[:3, 3]`` for each point x.
    """
    affine = np.asarray(affine, dtype=float)
    points = np.asarray(points, dtype=float)
    return points @ affine[:3, :3].T + affine[:3, 3]


def compose_affines(*matrices):
    """Compose 4x4 affines so the result maps x -> M1 @ M2 @ ... @ x (identity if none)."""
    out = np.eye(4)
    for m in matrices:
        out = out @ np.asarray(m, dtype=float)
    return out


def translation(offset):
    """4x4 affine ``x -> x + offset`` (µm, z, y, x)."""
    out = np.eye(4)
    out[:3, 3] = np.asarray(offset, dtype=float)
    return out


def to_frames(local, fix_origin, mov_origin):
    """An affine between origin-0 images (voxel 0 at 0 µm) -> the same alignment between
    images whose voxel 0 sits at ``fix_origin`` / ``mov_origin`` (µm, z, y, x).

    Returns ``T(mov_origin) @ local @ T(-fix_origin)``, (4, 4).
    """
    fix_origin = np.asarray(fix_origin, dtype=float)
    return translation(mov_origin) @ np.asarray(local, dtype=float) @ translation(-fix_origin)


def to_local(total, fix_origin, mov_origin):
    """Inverse of :func:`to_frames`: ``T(-mov_origin) @ total @ T(fix_origin)``, (4, 4)."""
    mov_origin = np.asarray(mov_origin, dtype=float)
    return translation(-mov_origin) @ np.asarray(total, dtype=float) @ translation(fix_origin)


def physical_grid(start, shape, spacing, *, origin=None):
    """Physical coordinates of a region of a voxel grid.

    Parameters
    ----------
    start : sequence of 3 int
        First voxel of the region, z, y, x.
    shape : sequence of 3 int
        Region size in voxels, z, y, x.
    spacing : sequence of 3 float
        Voxel size, µm, z, y, x.
    origin : sequence of 3 float, optional
        Physical position of the grid's voxel 0, µm, z, y, x (default 0).

    Returns
    -------
    (Z, Y, X, 3) float64 array of µm coordinates (z, y, x) of every voxel,
    ``origin + index * spacing``.
    """
    origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=float)
    axes = [o + (np.arange(n) + s) * sp for s, n, sp, o in zip(start, shape, spacing, origin)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
