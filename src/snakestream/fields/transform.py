"""Transforms: conversion between our z,y,x matrices and SimpleITK, evaluation.

Our convention: a 4x4 affine maps *fixed* physical coordinates (µm, z, y, x)
to *moving* physical coordinates. SimpleITK works in x, y, z; a matrix is
converted by reversing the order of the three spatial axes.

A block transform is an ordered list of transforms ``[T1, T2, ...]`` applied
last-first, ``x -> T1(T2(...(x)))``, which is how SimpleITK's
``CompositeTransform`` and bigstream's ``transform_list`` read.
"""

import numpy as np
import SimpleITK as sitk

_REVERSE = [2, 1, 0]


def affine_to_sitk(matrix):
    """4x4 z,y,x affine (µm) -> ``sitk.AffineTransform`` (x,y,z).

    Parameters
    ----------
    matrix : (4, 4) array
        Fixed-to-moving physical affine, z, y, x order.
    """
    matrix = np.asarray(matrix, dtype=float)
    t = sitk.AffineTransform(3)
    t.SetMatrix(matrix[:3, :3][np.ix_(_REVERSE, _REVERSE)].ravel().tolist())
    t.SetTranslation(matrix[:3, 3][_REVERSE].tolist())
    return t


def sitk_to_affine(transform):
    """Any SimpleITK matrix-offset transform (Euler, Affine, ...) -> 4x4 z,y,x matrix.

    The transform's centre is folded into the translation.
    """
    t = sitk.AffineTransform(3)
    t.SetMatrix(transform.GetMatrix())
    t.SetTranslation(transform.GetTranslation())
    t.SetCenter(transform.GetCenter())
    m = np.array(t.GetMatrix()).reshape(3, 3)
    c = np.array(t.GetCenter())
    offset = np.array(t.GetTranslation()) + c - m @ c
    out = np.eye(4)
    out[:3, :3] = m[np.ix_(_REVERSE, _REVERSE)]
    out[:3, 3] = offset[_REVERSE]
    return out


def bspline_to_sitk(fixed_parameters, parameters):
    """Rebuild a cubic ``sitk.BSplineTransform`` from its stored parameters."""
    t = sitk.BSplineTransform(3, 3)
    t.SetFixedParameters([float(v) for v in fixed_parameters])
    t.SetParameters([float(v) for v in parameters])
    return t


def to_sitk(kind, fixed_parameters, parameters):
    """One stored transform (``kind`` 'affine' or 'bspline') -> SimpleITK transform."""
    if kind == "affine":
        return affine_to_sitk(np.asarray(parameters, dtype=float).reshape(4, 4))
    if kind == "bspline":
        return bspline_to_sitk(fixed_parameters, parameters)
    raise ValueError(f"unknown transform kind {kind!r}")


def composite(transforms):
    """SimpleITK composite applying ``transforms`` last-first (T1(T2(x)))."""
    comp = sitk.CompositeTransform(3)
    for t in transforms:
        comp.AddTransform(t)
    return comp


def compose_affines(*matrices):
    """Compose 4x4 affines so the result maps x -> M1 @ M2 @ ... @ x."""
    out = np.eye(4)
    for m in matrices:
        out = out @ np.asarray(m, dtype=float)
    return out


def displacement_on_grid(transform, start, shape, spacing):
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

    Returns
    -------
    (Z, Y, X, 3) float32 array of displacements in µm, vector order z, y, x.
    """
    spacing = np.asarray(spacing, dtype=float)
    origin = np.asarray(start, dtype=float) * spacing
    field = sitk.TransformToDisplacementField(
        transform, sitk.sitkVectorFloat64,
        size=[int(s) for s in shape[::-1]],
        outputOrigin=origin[::-1].tolist(),
        outputSpacing=spacing[::-1].tolist(),
    )
    arr = sitk.GetArrayFromImage(field)
    return arr[..., ::-1].astype(np.float32)


def apply_affine(matrix, points):
    """Map (N, 3) z,y,x points (µm) through a 4x4 affine."""
    matrix = np.asarray(matrix, dtype=float)
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def physical_grid(start, shape, spacing):
    """(Z, Y, X, 3) physical coordinates (µm, z,y,x) of a region of a voxel grid."""
    axes = [(np.arange(n) + s) * sp for s, n, sp in zip(start, shape, spacing)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def sample_field(field, spacing, points):
    """Trilinearly interpolate a displacement field at physical points.

    Parameters
    ----------
    field : array-like (Z, Y, X, 3)
        Displacements in µm on a grid with voxel i at i*spacing.
    spacing : sequence of 3 float
        Field grid spacing, µm, z,y,x.
    points : (N, 3) array
        Physical points, µm, z,y,x. Outside the grid the edge value is used.
    """
    from scipy.ndimage import map_coordinates

    field = np.asarray(field)
    idx = (np.asarray(points, dtype=float) / np.asarray(spacing, dtype=float)).T
    return np.stack([
        map_coordinates(field[..., k], idx, order=1, mode="nearest")
        for k in range(3)
    ], axis=-1)


def transform_points(points, affine, field=None, field_spacing=None):
    """Apply the full ``[affine, deform]`` transform to fixed points.

    Returns A @ (x + d(x)) for each z,y,x point x (µm); ``d`` is 0 without a field.
    """
    points = np.asarray(points, dtype=float)
    if field is not None:
        points = points + sample_field(field, field_spacing, points)
    return apply_affine(affine, points)


def sample_zarr_field(field, spacing, points):
    """Trilinear displacement at physical points, reading only 2x2x2 voxels per point.

    ``field`` is an on-disk (Z, Y, X, 3) array (zarr); suited to a few thousand
    points (landmarks, FISH spots) in a field too big to load.
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
