"""NRRD volumes (pynrrd): attached ``*.nrrd`` or detached ``*.nhdr`` + data file.

Header axes are fastest-first (x, y, z); volumes are handed out (z, y, x), and
spacing and 'space origin' are reversed to z, y, x likewise. The header is taken
as written (no 'space' re-orientation: for 'left-posterior-superior', or no
'space', ITK reads the same coordinates; axis-aligned 'space directions' are
assumed). Raw
data is memory-mapped so a crop reads only what it needs; compressed data is
decoded whole, then cropped.
"""

import functools
import math
import os
import tempfile

import numpy as np

from snakestream.errors import InputError
from snakestream.io.atomic import atomic_path
from snakestream.io.datasets import Opened, no_dataset
from snakestream.io.metadata import as_floats, um_per_unit

__all__ = ["open_dataset", "write_file"]

_NRRD_TYPES = {
    "i1": ["signed char", "int8", "int8_t"],
    "u1": ["uchar", "unsigned char", "uint8", "uint8_t"],
    "i2": ["short", "short int", "signed short", "signed short int", "int16", "int16_t"],
    "u2": ["ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"],
    "i4": ["int", "signed int", "int32", "int32_t"],
    "u4": ["uint", "unsigned int", "uint32", "uint32_t"],
    "i8": ["longlong", "long long", "long long int", "signed long long",
           "signed long long int", "int64", "int64_t"],
    "u8": ["ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"],
    "f4": ["float"],
    "f8": ["double"],
}
_NRRD_DTYPE = {alias: code for code, aliases in _NRRD_TYPES.items() for alias in aliases}


def _nrrd_header(path):
    """(header dict, byte offset where attached data starts)."""
    import nrrd

    try:
        with open(path, "rb") as fh:
            header = nrrd.read_header(fh)
            return header, fh.tell()
    except (nrrd.NRRDError, ValueError, StopIteration) as exc:
        raise InputError(path, f"cannot read the NRRD header ({exc}).",
                         "check that the file is a valid NRRD") from exc


def _nrrd_dtype(header, where):
    code = _NRRD_DTYPE.get(str(header.get("type", "")).lower())
    if code is None:
        raise InputError(where, f"NRRD type {header.get('type')!r} is not supported.",
                         "save the volume as an integer or float NRRD")
    order = ">" if header.get("endian") == "big" else "<"
    return np.dtype(order + code)


def _nrrd_spacing(header):
    """Spacing (z, y, x) from 'space directions' (row norms) or 'spacings'."""
    if header.get("space directions") is not None:
        rows = np.asarray(header["space directions"], dtype=np.float64)
        values, source = np.linalg.norm(rows, axis=1), "NRRD 'space directions'"
    elif header.get("spacings") is not None:
        values, source = as_floats(header["spacings"]), "NRRD 'spacings'"
    else:
        return None
    units = header.get("space units") or []
    factors = [um_per_unit(u) for u in units]
    if len(factors) == len(values) and None not in factors:
        values = values * np.asarray(factors)
    return values[::-1], source


def _nrrd_origin(header):
    """Origin (z, y, x) from 'space origin' (x, y, z), in 'space units', or None."""
    if header.get("space origin") is None:
        return None
    values = as_floats(header["space origin"])
    if not isinstance(values, np.ndarray):
        return values, "NRRD 'space origin'"
    factors = [um_per_unit(u) for u in header.get("space units") or []]
    if len(factors) == len(values) and None not in factors:
        values = values * np.asarray(factors)
    return values[::-1], "NRRD 'space origin'"


def open_dataset(path, dataset):
    """Open an NRRD volume (`dataset` must be None); dtype in the file's byte order.

    Spacing from 'space directions' or 'spacings', origin from 'space origin', with
    'space units' (all x, y, z in the header, reversed to z, y, x); contract in
    :mod:`snakestream.io.datasets`.
    """
    no_dataset(path, dataset, "NRRD")
    header, _ = _nrrd_header(path)
    shape = tuple(int(n) for n in np.asarray(header["sizes"])[::-1])
    dtype = _nrrd_dtype(header, path)
    return Opened(None, shape, dtype, None, _nrrd_spacing(header),
                  functools.partial(_read_nrrd, path), origin=_nrrd_origin(header))


def _nrrd_raw_location(path, header, offset):
    """(data file, byte offset) of raw NRRD data, or None if it must be decoded."""
    if header.get("encoding") != "raw":
        return None
    data_file = header.get("data file", header.get("datafile"))
    line_skip = header.get("line skip", header.get("lineskip", 0))
    byte_skip = header.get("byte skip", header.get("byteskip", 0))
    if data_file is not None:
        path, offset = os.path.join(os.path.dirname(path), data_file), 0
    if line_skip or (data_file is not None and "%" in str(data_file)):
        return None
    if byte_skip == -1:
        nbytes = _nrrd_dtype(header, path).itemsize * math.prod(header["sizes"])
        return path, os.path.getsize(path) - nbytes
    return path, offset + byte_skip


def _read_nrrd(path, slices):
    """Raw NRRD: memory-map and copy the region; compressed: decode all, then crop."""
    import nrrd

    header, offset = _nrrd_header(path)
    shape = tuple(int(n) for n in np.asarray(header["sizes"])[::-1])
    location = _nrrd_raw_location(path, header, offset)
    if location is None:
        data, _ = nrrd.read(path, index_order="C")
        return data[slices]
    mm = np.memmap(location[0], dtype=_nrrd_dtype(header, path), mode="r",
                   offset=location[1], shape=shape)
    return np.array(mm[slices])


def _nrrd_header_for(spacing, origin):
    return {"encoding": "raw", "space dimension": 3, "kinds": ["domain"] * 3,
            "space directions": np.diag(np.asarray(spacing, dtype=np.float64)[::-1]),
            "space origin": np.asarray(origin, dtype=np.float64)[::-1],
            "space units": ["microns"] * 3}


def write_file(path, data, spacing, origin):
    """Write an attached-header NRRD (raw) or, for ``*.nhdr``, header plus ``*.raw``.

    Unlike the other formats' writers this one makes its own write atomic (an
    ``*.nhdr`` write produces two files, each renamed into place). Spacing goes
    to diagonal 'space directions', origin to 'space origin' (x, y, z) in "microns".
    """
    import nrrd

    if not path.lower().endswith(".nhdr"):
        with atomic_path(path) as tmp:
            nrrd.write(tmp, data, _nrrd_header_for(spacing, origin), index_order="C")
        return
    folder, name = os.path.split(os.path.abspath(path))
    raw = os.path.splitext(name)[0] + ".raw"
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}.tmp-") as tmp:
        nrrd.write(os.path.join(tmp, name), data, _nrrd_header_for(spacing, origin),
                   index_order="C")
        os.replace(os.path.join(tmp, raw), os.path.join(folder, raw))
        os.replace(os.path.join(tmp, name), os.path.join(folder, name))
