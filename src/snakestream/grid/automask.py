"""``mask: auto``: a foreground mask computed once from a low-resolution copy of a volume.

The volume is read at about ``auto_mask.spacing`` µm (config/schema.yaml) from the
coarsest pyramid level no coarser than that, block-averaged toward it
(:func:`snakestream.io.pyramids.read_near`; block means of the full level when the
file has no pyramid), so the job never reads the full resolution when a level fits.
The low-resolution image is smoothed with a Gaussian of ``smooth_um`` µm and
thresholded, at Otsu's threshold of the smoothed image unless a ``threshold``
(intensity) is given, and the holes of the foreground are filled: the
smoothed-threshold foreground segmentation bigstream's C. elegans runs used.

The mask is written as a one-level OME-Zarr image (NGFF 0.4, dataset ``0``, uint8
0/1, scale = its spacing in µm) that napari or any OME-Zarr viewer opens and edits.
Its voxel 0 is centred on the image's voxel 0 (translation 0), the frame every
mask at another resolution is read in (:func:`snakestream.grid.blocks.nearest_voxel`):
the block means' half-voxel shift is interpolated away before thresholding.
"""

import numpy as np

from snakestream.errors import InputError
from snakestream.io import ngff
from snakestream.io.atomic import atomic_path
from snakestream.io.pyramids import read_near

__all__ = ["MASK_CHUNKS", "compute_mask", "foreground", "otsu_threshold", "write_mask"]

MASK_CHUNKS = (64, 64, 64)  # voxels, z, y, x, of the written mask


def otsu_threshold(values, *, bins=256):
    """Otsu's threshold of `values`: the one maximising the between-class variance.

    Parameters
    ----------
    values : numpy.ndarray
        Intensities, any shape (flattened).
    bins : int
        Histogram bins between the minimum and maximum.

    Returns
    -------
    float
        The threshold (an intensity): foreground is ``values > threshold``.
    """
    counts, edges = np.histogram(np.ravel(values), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts, dtype=np.float64)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.nanargmax(between[:-1]))])


def foreground(data, spacing, *, smooth_um, threshold=None):
    """The foreground of a low-resolution image: smoothed, thresholded, holes filled.

    Parameters
    ----------
    data : numpy.ndarray
        Image (z, y, x), float.
    spacing : sequence of 3 float
        Its spacing, µm (z, y, x).
    smooth_um : float
        Gaussian sigma, µm (0: no smoothing).
    threshold : float, optional
        Intensity threshold of the smoothed image; Otsu's when None.

    Returns
    -------
    mask : numpy.ndarray of bool, (z, y, x)
    threshold : float
        The threshold used.
    """
    from scipy import ndimage

    smoothed = np.asarray(data, np.float32)
    if smooth_um > 0:
        smoothed = ndimage.gaussian_filter(smoothed, smooth_um / np.asarray(spacing, float),
                                           mode="nearest")
    if threshold is None:
        threshold = otsu_threshold(smoothed)
    return ndimage.binary_fill_holes(smoothed > threshold), float(threshold)


def _centre_on_origin(data, spacing, offset):
    """`data` resampled (linear) so its voxel 0 is centred at the full level's voxel 0.

    A block mean's voxel 0 is centred `offset` µm (z, y, x) into the image; masks at
    another resolution are read with voxel centres at ``index x spacing`` from there.
    """
    from scipy import ndimage

    shift = np.asarray(offset, float) / np.asarray(spacing, float)
    if not np.any(np.abs(shift) > 1e-6):
        return data
    return ndimage.shift(data, shift, order=1, mode="nearest")


def compute_mask(volume, *, spacing, smooth_um, threshold=None, log=print):
    """The foreground mask of `volume` at about `spacing` µm.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The configured (full) level of the image.
    spacing : float or sequence of 3 float
        Wanted mask spacing, µm (one value: every axis).
    smooth_um, threshold
        As in :func:`foreground`.
    log : callable
        Called with the line naming the level read, and one with the threshold and
        the foreground fraction.

    Returns
    -------
    mask : numpy.ndarray of uint8, (z, y, x)
        1 in the foreground, 0 elsewhere.
    mask_spacing : numpy.ndarray
        Its spacing, µm (z, y, x).

    Raises
    ------
    InputError
        The low-resolution image is constant (no foreground to find).
    """
    wanted = np.broadcast_to(np.asarray(spacing, float), (3,))
    coarse = read_near(volume, wanted, purpose="auto mask")
    log(coarse.message)
    if float(coarse.data.max()) <= float(coarse.data.min()):
        raise InputError(volume.path, "is constant at the auto mask's spacing, so it has no "
                         "foreground to find.", "give a mask file as `mask:`, or none.")
    data = _centre_on_origin(coarse.data, coarse.spacing, coarse.offset)
    mask, used = foreground(data, coarse.spacing, smooth_um=smooth_um, threshold=threshold)
    log(f"auto mask: threshold {used:.6g} ({'Otsu' if threshold is None else 'given'}), "
        f"{mask.mean():.3f} of {mask.size} voxels foreground at "
        f"{np.round(coarse.spacing, 4).tolist()} µm")
    return mask.astype(np.uint8), coarse.spacing


def write_mask(path, mask, spacing, *, name="mask"):
    """Write a mask as a one-level OME-Zarr image (NGFF 0.4, dataset ``0``), atomically.

    Parameters
    ----------
    path : str
        Output ``*.ome.zarr`` folder (replaced).
    mask : numpy.ndarray, (z, y, x)
        The mask (uint8 0/1).
    spacing : sequence of 3 float
        Its spacing, µm (z, y, x): the ``scale`` of its ``multiscales`` metadata.
    name : str
        The image's name in the metadata.
    """
    chunks = tuple(min(c, n) for c, n in zip(MASK_CHUNKS, mask.shape))
    with atomic_path(path) as tmp:
        level0 = ngff.create_image(tmp, mask.shape, mask.dtype, chunks, spacing, levels=1,
                                   name=name)
        level0[...] = mask
