"""Our z, y, x transforms as SimpleITK transforms, and back.

Our convention: a 4x4 affine maps *fixed* physical coordinates (µm, z, y, x) to
*moving* physical coordinates. SimpleITK works in x, y, z; a matrix is converted by
reversing the order of the three spatial axes.

A block transform is an ordered list of transforms ``[T1, T2, ...]`` applied
last-first, ``x -> T1(T2(...(x)))``, which is how SimpleITK's ``CompositeTransform``
and bigstream's ``transform_list`` read.
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

    Returns
    -------
    sitk.AffineTransform with centre 0.
    """
    matrix = np.asarray(matrix, dtype=float)
    t = sitk.AffineTransform(3)
    t.SetMatrix(matrix[:3, :3][np.ix_(_REVERSE, _REVERSE)].ravel().tolist())
    t.SetTranslation(matrix[:3, 3][_REVERSE].tolist())
    return t


def sitk_to_affine(transform):
    """Any SimpleITK matrix-offset transform (Euler, Affine, ...) -> 4x4 z,y,x matrix.

    The transform's centre is folded into the translation.

    Parameters
    ----------
    transform : sitk.Transform
        A 3-D matrix-offset transform (x, y, z, µm).

    Returns
    -------
    (4, 4) float64 fixed -> moving affine, z, y, x, µm.
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
