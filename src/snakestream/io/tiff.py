"""TIFF volumes (tifffile): ImageJ hyperstacks, OME-TIFF and plain multi-page TIFF.

Pages are read through tifffile's Zarr view, so a crop reads only its z pages.
"""

import functools

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import Opened, no_dataset
from snakestream.io.metadata import as_floats, um_per_unit

__all__ = ["open_dataset", "write_file"]

def _tiff_file(path):
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise InputError(path, f"cannot read as TIFF ({exc}).",
                         "check that the file is a complete TIFF") from exc


def _imagej_spacing(tif):
    """Spacing (z, y, x) from ImageJ 'spacing', 'unit' and X/YResolution tags."""
    meta = tif.imagej_metadata or {}
    factor = um_per_unit(meta.get("unit"), default=None)
    tags = tif.pages[0].tags
    if (factor is None or "spacing" not in meta
            or "XResolution" not in tags or "YResolution" not in tags):
        return None
    xres, yres = (tags[k].value for k in ("XResolution", "YResolution"))
    values = [float(meta["spacing"]), yres[1] / yres[0], xres[1] / xres[0]]
    return np.asarray(values) * factor, "ImageJ metadata"


def _ome_tiff_spacing(tif):
    """Spacing (z, y, x) from OME-XML PhysicalSize{Z,Y,X} (units default to µm)."""
    import tifffile

    if not tif.is_ome:
        return None
    image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    keys = [f"PhysicalSize{a}" for a in "ZYX"]
    if not all(k in pixels for k in keys):
        return None
    factors = [um_per_unit(pixels.get(k + "Unit")) for k in keys]
    if None in factors:
        return None
    return np.array([float(pixels[k]) for k in keys]) * factors, "OME-TIFF PhysicalSize"


def _tiff_spacing(tif):
    """Spacing from ImageJ metadata, OME-XML, or tifffile's JSON 'spacing' (z, y, x)."""
    found = _imagej_spacing(tif) or _ome_tiff_spacing(tif)
    if found is None and tif.shaped_metadata and "spacing" in tif.shaped_metadata[0]:
        found = as_floats(tif.shaped_metadata[0]["spacing"]), "TIFF metadata 'spacing'"
    return found


def open_dataset(path, dataset):
    """Open the first series of a TIFF file (`dataset` must be None).

    Spacing from ImageJ metadata, OME-XML or tifffile's JSON 'spacing'. TIFF gives
    no origin (voxel 0 at 0 µm unless the config sets `origin`); contract
    in :mod:`snakestream.io.datasets`.
    """
    no_dataset(path, dataset, "TIFF")
    with _tiff_file(path) as tif:
        series = tif.series[0]
        return Opened(None, tuple(series.shape), series.dtype, None, _tiff_spacing(tif),
                      functools.partial(_read_tiff, path))


def _read_tiff(path, slices):
    import zarr

    with _tiff_file(path) as tif, tif.series[0].aszarr() as store:
        return zarr.open(store, mode="r")[slices]


def write_file(path, array, spacing):
    """Write `array` as a TIFF with spacing metadata.

    ImageJ hyperstack (spacing, unit "um", X/YResolution) for uint8/uint16/float32,
    else tifffile JSON metadata 'spacing' (z, y, x). Contract in
    :mod:`snakestream.io.datasets`.
    """
    import tifffile

    sz, sy, sx = (float(v) for v in spacing)
    if array.dtype in (np.uint8, np.uint16, np.float32):
        tifffile.imwrite(path, array, imagej=True, resolution=(1 / sx, 1 / sy),
                         metadata={"spacing": sz, "unit": "um", "axes": "ZYX"})
    else:
        tifffile.imwrite(path, array, resolution=(1 / sx, 1 / sy),
                         metadata={"spacing": [sz, sy, sx]})
