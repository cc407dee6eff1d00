"""N5 volumes, read and written by a small hand-written codec.

An N5 container keeps an ``attributes.json`` per node and each block of a dataset
in a file ``<x>/<y>/<z>`` holding a big-endian header and the (optionally
compressed) big-endian voxels, axes fastest-first (x, y, z).

N5 is implemented here because zarr 3 ships no N5 store and the ``zarr-n5``
package only reads N5 (its store is read-only and its codec has no encoder).
Supported N5 compressions: raw, gzip (and zlib), bzip2, xz, blosc and zstd for
reading; raw and gzip for writing. The codec is kept in this one module so that
a maintained library can replace it without touching the rest of the package.

Entry points: :func:`open_dataset` and :func:`write_dataset`.
"""

import bz2
import functools
import gzip
import itertools
import json
import lzma
import math
import os
import struct
import zlib

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import Opened, ancestors, label, no_dataset, pick_dataset
from snakestream.io.metadata import hierarchy_spacing

__all__ = ["open_dataset", "write_dataset"]

_N5_TYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
             "float32", "float64")
_N5_DECOMPRESS = {
    "raw": lambda body: body,
    "gzip": lambda body: zlib.decompress(body, 47),  # 47: gzip or zlib header
    "bzip2": bz2.decompress,
    "xz": lzma.decompress,
    "blosc": lambda body: _numcodec("Blosc").decode(body),
    "zstd": lambda body: _numcodec("Zstd").decode(body),
}


def _numcodec(name):
    import numcodecs

    return getattr(numcodecs, name)()


def _n5_attrs(node_dir):
    """Attributes of an N5 node ({} when it has no attributes.json)."""
    try:
        with open(os.path.join(node_dir, "attributes.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(node_dir, f"unreadable N5 attributes.json ({exc}).",
                         "repair or re-create the N5 container") from exc


def _n5_is_dataset(attrs):
    return all(k in attrs for k in ("dimensions", "blockSize", "dataType"))


def _n5_dataset_names(root):
    """Dataset paths under an N5 root, without descending into datasets."""
    names = []
    for folder, subdirs, _ in os.walk(root):
        if folder != root and _n5_is_dataset(_n5_attrs(folder)):
            names.append(os.path.relpath(folder, root).replace(os.sep, "/"))
            subdirs.clear()
    return sorted(names)


def _n5_meta(ds_dir, where):
    """(shape zyx, block zyx, dtype, compression dict) of an N5 dataset."""
    attrs = _n5_attrs(ds_dir)
    dtype = attrs.get("dataType")
    if dtype not in _N5_TYPES:
        raise InputError(where, f"N5 dataType {dtype!r} is not supported.",
                         f"store the data as one of {', '.join(_N5_TYPES)}")
    compression = attrs.get("compression") or {"type": attrs.get("compressionType", "raw")}
    if compression.get("type") not in _N5_DECOMPRESS:
        raise InputError(where, f"N5 compression {compression.get('type')!r} is not supported.",
                         f"re-save with one of {', '.join(_N5_DECOMPRESS)}")
    shape = tuple(int(n) for n in attrs["dimensions"][::-1])
    block = tuple(int(n) for n in attrs["blockSize"][::-1])
    return shape, block, np.dtype(dtype).newbyteorder(">"), compression


def open_dataset(path, dataset):
    """Open an N5 container's root dataset, or dataset `dataset` inside it.

    Chunks are the N5 block shape, dtype big-endian; spacing from the attributes
    (see :func:`~snakestream.io.metadata.hierarchy_spacing`). Contract in
    :mod:`snakestream.io.datasets`.
    """
    if _n5_is_dataset(_n5_attrs(path)):
        no_dataset(path, dataset, "root-dataset N5")
        name, ds_dir, groups = None, path, []
    else:
        name = pick_dataset(path, dataset, lambda n: _n5_is_dataset(_n5_attrs(_n5_dir(path, n))),
                            lambda: _n5_dataset_names(path))
        ds_dir = _n5_dir(path, name)
        groups = [(_n5_attrs(_n5_dir(path, g)), rel) for g, rel in ancestors(name)]
    shape, block, dtype, _ = _n5_meta(ds_dir, label(path, name))
    found = hierarchy_spacing(_n5_attrs(ds_dir), groups)
    return Opened(name, shape, dtype, block, found, functools.partial(_n5_read, ds_dir))


def _n5_dir(root, name):
    return os.path.join(root, *name.split("/")) if name else root


def _n5_decode_block(raw, dtype, compression, where):
    """Decode one N5 block file into a (z, y, x) array of the stored block shape."""
    mode, ndim = struct.unpack(">HH", raw[:4]) if len(raw) >= 4 else (-1, 0)
    if mode not in (0, 1) or ndim != 3 or len(raw) < 16:
        raise InputError(where, f"N5 block with mode {mode} and {ndim} dims is not supported.",
                         "re-save the N5 dataset as a plain 3-D array")
    dims = struct.unpack(">3I", raw[4:16])
    offset = 16 + (4 if mode == 1 else 0)
    try:
        body = _N5_DECOMPRESS[compression["type"]](raw[offset:])
        return np.frombuffer(body, dtype=dtype, count=math.prod(dims)).reshape(dims[::-1])
    except Exception as exc:  # zlib.error, lzma.LZMAError, ValueError, ...
        raise InputError(where, f"corrupt N5 block ({type(exc).__name__}: {exc}).",
                         "re-create the N5 dataset") from exc


def _n5_block_ranges(slices, block):
    """Per axis (z, y, x), the range of block indices a region touches."""
    return [range(s.start // b, -(-s.stop // b)) for s, b in zip(slices, block)]


def _n5_read(ds_dir, slices):
    """Read region `slices` (z, y, x) of an N5 dataset, opening only the blocks it touches."""
    _, block, dtype, compression = _n5_meta(ds_dir, ds_dir)
    out = np.zeros([s.stop - s.start for s in slices], dtype=dtype.newbyteorder("="))
    if out.size == 0:
        return out
    for index in itertools.product(*_n5_block_ranges(slices, block)):
        _n5_copy_block(ds_dir, index, block, dtype, compression, slices, out)
    return out


def _n5_copy_block(ds_dir, index, block, dtype, compression, slices, out):
    """Copy the part of block `index` (z, y, x) that lies in `slices` into `out`."""
    file = os.path.join(ds_dir, *(str(i) for i in index[::-1]))
    try:
        with open(file, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return  # an absent N5 block is empty: zeros
    data = _n5_decode_block(raw, dtype, compression, file)
    src, dst = [], []
    for i, b, s, n in zip(index, block, slices, data.shape):
        lo, hi = max(s.start, i * b), min(s.stop, i * b + n)
        if hi <= lo:
            return
        src.append(slice(lo - i * b, hi - i * b))
        dst.append(slice(lo - s.start, hi - s.start))
    out[tuple(dst)] = data[tuple(src)]


def _n5_encode_block(data, compression):
    """N5 block bytes (header + big-endian body) for a (z, y, x) array."""
    header = struct.pack(">HH3I", 0, 3, *data.shape[::-1])
    body = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">")).tobytes()
    if compression == "gzip":
        body = gzip.compress(body, compresslevel=6, mtime=0)
    return header + body


def write_dataset(root, name, array, spacing, chunks, compression="gzip"):
    """Write `array` (z, y, x) as N5 dataset `name` (None: the root) under `root`.

    `chunks` is the block shape (z, y, x), `compression` "gzip" or "raw"; spacing
    goes to 'pixelResolution' (x, y, z, unit "um"). Contract in
    :mod:`snakestream.io.datasets`.
    """
    if array.dtype.name not in _N5_TYPES:
        raise InputError(root, f"dtype {array.dtype} cannot be stored in N5.",
                         f"convert to one of {', '.join(_N5_TYPES)}")
    os.makedirs(root, exist_ok=True)
    _n5_write_attrs(root, {"n5": "4.0.0"})
    ds_dir = root
    for part in (name.split("/") if name else []):
        ds_dir = os.path.join(ds_dir, part)
        os.makedirs(ds_dir, exist_ok=True)
        _n5_write_attrs(ds_dir, {})
    _n5_write_attrs(ds_dir, {
        **({"n5": "4.0.0"} if ds_dir == root else {}),
        "dimensions": list(array.shape[::-1]), "blockSize": list(chunks[::-1]),
        "dataType": array.dtype.name, "compression": _n5_compression_attrs(compression),
        "pixelResolution": {"dimensions": [float(v) for v in spacing[::-1]], "unit": "um"},
    })
    for index in np.ndindex(*[-(-n // c) for n, c in zip(array.shape, chunks)]):
        part = array[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks))]
        file = os.path.join(ds_dir, *(str(i) for i in index[::-1]))
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with open(file, "wb") as fh:
            fh.write(_n5_encode_block(part, compression))


def _n5_compression_attrs(compression):
    if compression == "gzip":
        return {"type": "gzip", "level": 6, "useZlib": False}
    return {"type": "raw"}


def _n5_write_attrs(node_dir, attrs):
    with open(os.path.join(node_dir, "attributes.json"), "w", encoding="utf-8") as fh:
        json.dump(attrs, fh)
