"""HDF5 volumes (h5py): one dataset of a file, opened read-only without file locking."""

import functools

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import Opened, pick_dataset
from snakestream.io.metadata import as_floats

__all__ = ["open_dataset", "write_dataset"]


def _h5_file(path):
    """Open an HDF5 file read-only without file locking (safe for many readers)."""
    import h5py

    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise InputError(path, f"cannot open as HDF5 ({exc}).",
                         "check that the file is a complete HDF5 file") from exc


def _h5_dataset_names(fh):
    import h5py

    names = []
    fh.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _h5_spacing(attrs):
    for key in ("element_size_um", "spacing"):
        if key in attrs:
            return as_floats(attrs[key]), f"HDF5 attribute {key!r}"
    return None


def _h5_origin(attrs):
    for key in ("origin", "offset"):
        if key in attrs:
            return as_floats(attrs[key]), f"HDF5 attribute {key!r}"
    return None


def open_dataset(path, dataset):
    """Open dataset `dataset` ("/ch0" or "ch0") of an HDF5 file; None: its only one.

    Spacing from attribute 'element_size_um' or 'spacing', origin from 'origin' or
    'offset' (both z, y, x, µm); contract
    in :mod:`snakestream.io.datasets`.
    """
    import h5py

    with _h5_file(path) as fh:
        name = pick_dataset(path, dataset, lambda n: isinstance(fh.get(n), h5py.Dataset),
                            lambda: _h5_dataset_names(fh))
        ds = fh[name]
        return Opened(name, ds.shape, ds.dtype, ds.chunks, _h5_spacing(ds.attrs),
                      functools.partial(_read_h5, path, name), origin=_h5_origin(ds.attrs))


def _read_h5(path, name, slices):
    with _h5_file(path) as fh:
        return fh[name][slices]


def write_dataset(path, array, spacing, origin, dataset, chunks):
    """Write `array` as a new HDF5 file with one gzip dataset (None: "data").

    `chunks` (z, y, x); spacing goes to attribute 'element_size_um', origin to
    'origin' (z, y, x, µm).
    Contract in :mod:`snakestream.io.datasets`.
    """
    import h5py

    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset(dataset or "data", data=array, chunks=chunks, compression="gzip")
        ds.attrs["element_size_um"] = np.asarray(spacing, dtype=np.float64)
        ds.attrs["origin"] = np.asarray(origin, dtype=np.float64)
