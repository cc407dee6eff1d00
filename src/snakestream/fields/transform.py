"""The transform ``[affine, deform]`` on points: forward, inverse, and field sampling.

A fixed point x (µm, z, y, x) maps to the moving point ``y = A @ (x + d(x))``, where
A is the 4x4 global affine and d the stitched displacement field (µm, z, y, x
vectors on the fixed grid, voxel i at ``origin + i * spacing``, the fixed origin).
:func:`apply_transform` is that formula; :func:`transform_points` samples d and
applies it; the inverse solves ``x = A^-1 y - d(x)`` by fixed-point iteration
(:func:`inverse_displacement`).

A block's own transforms are SimpleITK transforms
(:mod:`snakestream.register.sitk_transforms`); :func:`displacement_on_grid`
evaluates one on a region of the fixed grid.
"""

import numpy as np
import SimpleITK as sitk

from snakestream.grid.geometry import apply_affine


def displacement_on_grid(transform, start, shape, spacing, *, origin=None):
    """Evaluate ``transform(x) - x`` on a region of the fixed voxel grid.

    Parameters
    ----------
    transform : sitk.Transform
        Maps fixed physical points (x,y,z, µm) somewhere; usually a composite.
    start : sequence of 3 int
        First voxel of the region, z, y, x.
    shape : sequence of 3 int
        Region size in voxels, z, y, x.
    spacing : sequence of 3 float
        Fixed voxel spacing in µm, z, y, x.
    origin : sequence of 3 float, optional
        Fixed voxel 0's position, µm, z, y, x (default 0).

    Returns
    -------
    (Z, Y, X, 3) float32 array of displacements in µm, vector order z, y, x.
    """
    spacing = np.asarray(spacing, dtype=float)
    origin = (np.zeros(3) if origin is None else np.asarray(origin, dtype=float)) \
        + np.asarray(start, dtype=float) * spacing
    field = sitk.TransformToDisplacementField(
        transform, sitk.sitkVectorFloat64,
        size=[int(s) for s in shape[::-1]],
        outputOrigin=origin[::-1].tolist(),
        outputSpacing=spacing[::-1].tolist(),
    )
    arr = sitk.GetArrayFromImage(field)
    return arr[..., ::-1].astype(np.float32)


def sample_field(field, spacing, points):
    """Trilinearly interpolate an in-memory displacement field at physical points.

    Parameters
    ----------
    field : array-like (Z, Y, X, 3)
        Displacements in µm on a grid with voxel i at i*spacing.
    spacing : sequence of 3 float
        Field grid spacing, µm, z,y,x.
    points : (N, 3) array
        Physical points, µm, z,y,x. Outside the grid the edge value is used.

    Returns
    -------
    (N, 3) float64 displacements, µm, z, y, x.
    """
    from scipy.ndimage import map_coordinates

    field = np.asarray(field)
    idx = (np.asarray(points, dtype=float) / np.asarray(spacing, dtype=float)).T
    return np.stack([
        map_coordinates(field[..., k], idx, order=1, mode="nearest")
        for k in range(3)
    ], axis=-1)


def sample_zarr_field(field, spacing, points):
    """Trilinear displacement at physical points, reading only 2x2x2 voxels per point.

    ``field`` is an on-disk (Z, Y, X, 3) array (zarr); suited to a few thousand
    points (landmarks, FISH spots) in a field too big to load. Same arguments and
    result as :func:`sample_field`.
    """
    spacing = np.asarray(spacing, dtype=float)
    shape = np.array(field.shape[:3])
    out = np.zeros((len(points), 3))
    for n, p in enumerate(np.asarray(points, dtype=float)):
        idx = np.clip(p / spacing, 0, shape - 1)
        lo = np.minimum(np.floor(idx).astype(int), np.maximum(shape - 2, 0))
        hi = np.minimum(lo + 2, shape)
        cube = np.asarray(field[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=float)
        out[n] = sample_field(cube, spacing, (idx - lo)[None] * spacing)[0]
    return out


def sample_displacement(field, spacing, points, *, origin=None):
    """d(x) at physical points from a field in memory or on disk.

    Parameters
    ----------
    field : (Z, Y, X, 3) numpy array or zarr-like array
        Displacements, µm, z, y, x. A numpy array is interpolated as a whole
        (:func:`sample_field`); anything else is read 2x2x2 voxels per point
        (:func:`sample_zarr_field`).
    spacing, points
        As in :func:`sample_field`, ``points`` of any shape (..., 3).
    origin : sequence of 3 float, optional
        The field grid's voxel 0 position, µm (the fixed origin; default 0).

    Returns
    -------
    float64 array shaped like ``points``.
    """
    points = np.asarray(points, dtype=float)
    if origin is not None:
        points = points - np.asarray(origin, dtype=float)
    sample = sample_field if isinstance(field, np.ndarray) else sample_zarr_field
    return sample(field, spacing, points.reshape(-1, 3)).reshape(points.shape)


def apply_transform(affine, points, displacement=None):
    """The full transform on points whose displacement is known: ``A @ (x + d)``.

    Parameters
    ----------
    affine : (4, 4) array
        Fixed -> moving physical affine, z, y, x, µm.
    points : (..., 3) array
        Fixed physical points x, µm, z, y, x.
    displacement : (..., 3) array, optional
        d(x) at those points, µm (None: the affine alone).

    Returns
    -------
    (..., 3) float64 moving points, µm, z, y, x.
    """
    points = np.asarray(points, dtype=float)
    if displacement is not None:
        points = points + displacement
    return apply_affine(affine, points)


def transform_points(points, affine, field=None, field_spacing=None, *, field_origin=None):
    """Fixed -> moving: ``A @ (x + d(x))`` for each point, d sampled from ``field``.

    Parameters
    ----------
    points : (..., 3) array
        Fixed physical points, µm, z, y, x.
    affine : (4, 4) array
        Fixed -> moving physical affine, µm.
    field : (Z, Y, X, 3) array, optional
        Displacement field in memory or on disk (see :func:`sample_displacement`);
        None applies the affine alone.
    field_spacing : sequence of 3 float
        The field's grid spacing, µm, z, y, x.
    field_origin : sequence of 3 float, optional
        The field's voxel 0 position, µm (its ``attrs["origin"]``, the fixed origin;
        default 0).

    Returns
    -------
    (..., 3) float64 moving points, µm, z, y, x.
    """
    d = None if field is None else sample_displacement(field, field_spacing, points,
                                                       origin=field_origin)
    return apply_transform(affine, points, d)


def inverse_displacement(displacement, start, *, initial=None, iterations=50, tol=1e-4):
    """Solve ``e = -d(start + e)`` by fixed-point iteration.

    With ``start = A^-1 y`` the point ``x = start + e`` satisfies ``A @ (x + d(x)) = y``,
    so this inverts the transform. The iteration contracts when |grad d| < 1 (no folds).

    Parameters
    ----------
    displacement : callable
        ``displacement(points)`` -> d at (..., 3) physical points (µm, z, y, x).
    start : (..., 3) array
        Starting points ``A^-1 y``, µm.
    initial : (..., 3) array, optional
        First guess of e (default 0).
    iterations : int
        At most this many updates.
    tol : float
        Stop once no component of e changes by ``tol`` µm or more.

    Returns
    -------
    e : float64 array shaped like ``start``, µm.
    """
    start = np.asarray(start, dtype=float)
    e = np.zeros_like(start) if initial is None else initial
    for _ in range(iterations):
        new = -displacement(start + e)
        change = np.abs(new - e).max(initial=0.0)
        e = new
        if change < tol:
            break
    return e


def invert_points(points, affine, field=None, field_spacing=None, *, field_origin=None,
                  iterations=30, tol=1e-5):
    """Moving -> fixed: the x with ``A @ (x + d(x)) = y``, by fixed-point iteration.

    Needs no inverse field: only the forward field around each point is read.

    Parameters
    ----------
    points : (N, 3) array
        Moving physical points y, µm, z, y, x.
    affine, field, field_spacing, field_origin
        As in :func:`transform_points`.
    iterations, tol
        As in :func:`inverse_displacement` (µm).

    Returns
    -------
    x : (N, 3) float64
        Fixed points, µm, z, y, x.
    residual : (N,) float64
        ``|transform_points(x) - y|`` per point, µm.
    """
    points = np.asarray(points, float)
    x = apply_affine(np.linalg.inv(affine), points)
    if field is not None:
        x = x + inverse_displacement(
            lambda p: sample_displacement(field, field_spacing, p, origin=field_origin), x,
            iterations=iterations, tol=tol)
    residual = np.linalg.norm(transform_points(x, affine, field, field_spacing,
                                               field_origin=field_origin) - points, axis=1)
    return x, residual
