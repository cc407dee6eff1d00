"""N5 volumes, read and written through tensorstore's ``n5`` driver.

An N5 container keeps an ``attributes.json`` per node and each block of a dataset
in a file ``<x>/<y>/<z>`` holding a big-endian header and the (optionally
compressed) big-endian voxels. N5 lists dimensions fastest first (x, y, z);
tensorstore keeps that order, so every tensorstore array here is viewed
transposed (``.T``) to index it (z, y, x).

This module owns what tensorstore does not: which dataset of a container to open
(tensorstore opens one array, it does not list them), the attribute checks that
give one-line errors before tensorstore is asked, the spacing in the attributes
(:func:`~snakestream.io.metadata.hierarchy_spacing`), the group
``attributes.json`` files above a written dataset, and turning tensorstore's
errors into :class:`~snakestream.errors.InputError` lines naming the block file.
Compressions: raw, gzip, bzip2, xz, blosc and zstd for reading; raw and gzip for
writing. How tensorstore is opened (no cache, per read, the job's threads):
:mod:`~snakestream.io.tensorstore_arrays`.

Entry points: :func:`open_dataset` and :func:`write_dataset`;
:func:`set_pyramid_attributes` tags written ``s0 … sN`` datasets as a scale pyramid
the way n5-spark, n5-viewer and BigStitcher do.
"""

import functools
import json
import os

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import Opened, ancestors, label, no_dataset, pick_dataset
from snakestream.io.metadata import hierarchy_origin, hierarchy_spacing
from snakestream.io.tensorstore_arrays import failed_file, file_spec, open_array, read_region

__all__ = ["group_members", "open_dataset", "set_pyramid_attributes", "write_dataset"]

_N5_TYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
             "float32", "float64")
_N5_COMPRESSIONS = ("raw", "gzip", "bzip2", "xz", "blosc", "zstd")
_GZIP_LEVEL = 6


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


def _n5_dir(root, name):
    return os.path.join(root, *name.split("/")) if name else root


def _n5_meta(attrs, where):
    """(shape, block) (z, y, x) and native dtype of an N5 dataset's `attrs`, checked.

    Raises InputError for what tensorstore would refuse or misread: an unknown
    dataType or compression, and the pre-1.0 'compressionType' key (or none).
    """
    dtype = attrs.get("dataType")
    if dtype not in _N5_TYPES:
        raise InputError(where, f"N5 dataType {dtype!r} is not supported.",
                         f"store the data as one of {', '.join(_N5_TYPES)}")
    compression = attrs.get("compression")
    if not isinstance(compression, dict):
        old = attrs.get("compressionType", "raw")
        raise InputError(where, "N5 attributes.json has no 'compression' object (N5 before "
                         "1.0).", f'add "compression": {{"type": "{old}"}} to its attributes.json')
    if compression.get("type") not in _N5_COMPRESSIONS:
        raise InputError(where, f"N5 compression {compression.get('type')!r} is not supported.",
                         f"re-save with one of {', '.join(_N5_COMPRESSIONS)}")
    shape = tuple(int(n) for n in attrs["dimensions"][::-1])
    block = tuple(int(n) for n in attrs["blockSize"][::-1])
    return shape, block, np.dtype(dtype)


def open_dataset(path, dataset):
    """Open an N5 container's root dataset, or dataset `dataset` inside it.

    Only the attributes are read here (no block, no tensorstore). Chunks are the
    N5 block shape (z, y, x), dtype native order; spacing and origin from the
    attributes (see :func:`~snakestream.io.metadata.hierarchy_spacing` and
    :func:`~snakestream.io.metadata.hierarchy_origin`: 'origin'/'offset', z, y, x µm). Contract in
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
    attrs = _n5_attrs(ds_dir)
    where = label(path, name)
    shape, block, dtype = _n5_meta(attrs, where)
    found = hierarchy_spacing(attrs, groups)
    return Opened(name, shape, dtype, block, found, functools.partial(_n5_read, ds_dir, where),
                  origin=hierarchy_origin(attrs, groups))


def group_members(path, group):
    """A group's attributes and the datasets directly in it (only attributes are read).

    Parameters
    ----------
    path : str
        N5 container.
    group : str
        Group path inside it ("" for the root).

    Returns
    -------
    (dict, dict)
        The group's attributes, and ``{name: (shape, attrs)}`` of its child
        datasets, shape (z, y, x); ({}, {}) when `group` is not a folder.
    """
    folder = _n5_dir(path, group)
    if not os.path.isdir(folder):
        return {}, {}
    members = {}
    for name in sorted(os.listdir(folder)):
        attrs = _n5_attrs(os.path.join(folder, name)) if os.path.isdir(
            os.path.join(folder, name)) else {}
        if _n5_is_dataset(attrs):
            members[name] = (tuple(int(n) for n in attrs["dimensions"][::-1]), attrs)
    return _n5_attrs(folder), members


def _n5_read(ds_dir, where, slices):
    """Read region `slices` of an N5 dataset, opening only the blocks it touches.

    `slices` has a slice or int per axis, slowest first ((z, y, x); (c, z, y, x) for a
    4-D dataset, as N5's ``dimensions`` reversed).

    Returns a C-contiguous native-order array of the region's shape; absent blocks
    read as zeros, edge blocks stored at full size or truncated are both read.
    """
    try:
        return read_region(open_array(file_spec(ds_dir, "n5"), read=True).T, slices)
    except ValueError as exc:
        raise _block_error(exc, where) from exc


def _block_error(exc, where):
    """InputError for a tensorstore failure: names the block (or attributes) file."""
    file, reason = failed_file(exc, where)
    if "not supported" in reason:
        return InputError(file, f"unsupported N5 block ({reason}).",
                          "re-save the N5 dataset as a plain 3-D array")
    return InputError(file, f"corrupt N5 block ({reason}).", "re-create the N5 dataset")


def write_dataset(root, name, array, spacing, origin, chunks, compression="gzip"):
    """Write `array` (z, y, x) as N5 dataset `name` (None: the root) under `root`.

    Parameters
    ----------
    root : str
        New N5 container folder.
    name : str or None
        Dataset path inside it ("a/b"); each group above gets an attributes.json.
    array : numpy.ndarray
        Voxels (z, y, x), one of the N5 data types.
    spacing : numpy.ndarray
        (z, y, x) µm; stored as 'pixelResolution' (x, y, z, unit "um").
    origin : numpy.ndarray
        Voxel 0's centre (z, y, x) µm; stored as attribute 'origin' (z, y, x).
    chunks : tuple of int
        Block shape (z, y, x). Edge blocks are stored at full block size.
    compression : {"gzip", "raw"}
        Block compression (gzip level 6). Contract in :mod:`snakestream.io.datasets`.
    """
    if array.dtype.name not in _N5_TYPES:
        raise InputError(root, f"dtype {array.dtype} cannot be stored in N5.",
                         f"convert to one of {', '.join(_N5_TYPES)}")
    ds_dir = _n5_dir(root, name)
    metadata = {
        **({"n5": "4.0.0"} if not name else {}),
        "dimensions": list(array.shape[::-1]), "blockSize": [int(c) for c in chunks[::-1]],
        "dataType": array.dtype.name, "compression": _n5_compression_attrs(compression),
        "pixelResolution": {"dimensions": [float(v) for v in spacing[::-1]], "unit": "um"},
    }
    store = open_array({**file_spec(ds_dir, "n5"), "metadata": metadata}, create=True)
    store.T.write(np.asarray(array)).result()
    _n5_update_attrs(ds_dir, {"origin": [float(v) for v in origin]})
    if name:
        _n5_write_groups(root, name)


def _n5_write_groups(root, name):
    """attributes.json for the root ({"n5": "4.0.0"}) and each group above `name`."""
    _n5_write_attrs(root, {"n5": "4.0.0"})
    for group, _ in ancestors(name)[:-1]:
        _n5_write_attrs(_n5_dir(root, group), {})


def _n5_compression_attrs(compression):
    if compression == "gzip":
        return {"type": "gzip", "level": _GZIP_LEVEL, "useZlib": False}
    return {"type": "raw"}


def _n5_update_attrs(node_dir, attrs):
    """Add `attrs` to a node's attributes.json (kept: what is there)."""
    _n5_write_attrs(node_dir, {**_n5_attrs(node_dir), **attrs})


def _n5_write_attrs(node_dir, attrs):
    with open(os.path.join(node_dir, "attributes.json"), "w", encoding="utf-8") as fh:
        json.dump(attrs, fh)


def set_pyramid_attributes(root, spacing, factors, *, group=None):
    """Tag datasets ``s0 … sN`` of an N5 group as a scale pyramid, as the ecosystem does.

    Each ``s<k>`` gets ``downsamplingFactors`` (x, y, z, relative to ``s0``: n5-spark's
    N5ScalePyramidSpark and BigStitcher's export); the group gets ``pixelResolution``
    (``s0``'s spacing, ``{"dimensions": [x, y, z], "unit": "um"}``) and ``scales``
    (every level's factors, x, y, z), n5-viewer's multiscale group. Other attributes
    are kept.

    Parameters
    ----------
    root : str
        The N5 container folder.
    spacing : sequence of 3 float
        ``s0``'s spacing, µm (z, y, x).
    factors : sequence of sequences of 3 int
        Each level's factors relative to ``s0`` (z, y, x), ``s0``'s (1, 1, 1) first.
    group : str, optional
        Group of the levels inside the container (its root by default).
    """
    group_dir = _n5_dir(root, group)
    xyz = [[int(f) for f in level[::-1]] for level in factors]
    for k, level in enumerate(xyz):
        _update_attrs(os.path.join(group_dir, f"s{k}"), {"downsamplingFactors": level})
    resolution = {"dimensions": [float(v) for v in np.asarray(spacing)[::-1]], "unit": "um"}
    _update_attrs(group_dir, {"pixelResolution": resolution, "scales": xyz,
                              **({} if group else {"n5": "4.0.0"})})


def _update_attrs(node_dir, attrs):
    """Merge `attrs` into a node's attributes.json (created if missing)."""
    os.makedirs(node_dir, exist_ok=True)
    _n5_write_attrs(node_dir, {**_n5_attrs(node_dir), **attrs})
