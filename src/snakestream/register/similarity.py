"""How alike two images are: normalised cross-correlation, after resampling.

Images are :class:`~snakestream.register.align.Image` records (z, y, x array with
spacing and origin in µm).
"""

import numpy as np
import SimpleITK as sitk

from snakestream.register.sitk_transforms import affine_to_sitk


def ncc(a, b, mask=None):
    """Normalised cross-correlation of two same-shape arrays, optionally inside a mask.

    Parameters
    ----------
    a, b : arrays of the same shape
    mask : bool array of that shape, optional
        Only voxels where True count.

    Returns
    -------
    float in [-1, 1]; 0.0 if either array is constant.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a - a.mean(), b - b.mean()
    # elementwise sums, not BLAS dot: avoids OpenBLAS thread start-up per call
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def resample(fix, mov, transform):
    """The moving image resampled onto the fixed image's grid (linear, 0 outside).

    Parameters
    ----------
    fix, mov : Image
    transform : sitk.Transform
        Maps fixed physical points to moving ones (x, y, z, µm).

    Returns
    -------
    float32 array shaped like ``fix.data`` (z, y, x).
    """
    out = sitk.Resample(mov.to_sitk(), fix.to_sitk(), transform, sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(out)


def resample_affine(fix, mov, affine):
    """Moving image resampled onto the fixed grid through a 4x4 z,y,x affine (µm)."""
    return resample(fix, mov, affine_to_sitk(affine))


def ncc_after_affine(fix, mov, affine):
    """NCC (5 decimals) of the fixed image and the moving image pulled through ``affine``."""
    return round(ncc(fix.data, resample_affine(fix, mov, affine), fix.mask), 5)
