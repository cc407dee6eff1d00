"""Zarr v2/v3 (and OME-Zarr) volumes: opening, writing, and outputs written in place.

Inputs are opened with :func:`open_dataset` (through
:func:`~snakestream.io.volumes.open_volume`): zarr-python finds the array and its
metadata (groups, OME-Zarr 'multiscales', v2 ``.zattrs`` or v3 ``zarr.json``), and
regions are read through tensorstore (less than half zarr-python's CPU on the same
chunks, ``benchmarks/read_bench.py``); an array whose codecs tensorstore does
not read (v2 filters, an LZ4 compressor, numcodecs codecs in v3, ...) is read by
zarr-python instead. Whole volumes are written with
:func:`write_dataset` (through :func:`~snakestream.io.volumes.write_volume`).
The pipeline's own outputs that jobs fill chunk by chunk are created with
:func:`create_zarr` and reopened with :func:`open_zarr_array`. Compression is
blosc/zstd level 3 with byte shuffle.
"""

import functools
import os

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import (Opened, ancestors, label, no_dataset, pick_dataset,
                                     require_exists)
from snakestream.io.metadata import (check_origin, check_spacing, hierarchy_axes,
                                     hierarchy_origin, hierarchy_spacing, named_axes)
from snakestream.io.tensorstore_arrays import failed_file, file_spec, open_array, read_region

__all__ = ["create_zarr", "grid_attrs", "grid_origin", "group_members", "open_dataset",
           "open_zarr_array", "write_dataset", "zarr_compressor", "zarr_layout"]


def _zarr_node(path, mode="r"):
    """Open the Zarr node (group or array) at the root of `path`."""
    import zarr

    try:
        return zarr.open(store=path, mode=mode)
    except Exception as exc:  # zarr raises many types for a bad store
        raise InputError(path, f"cannot open as Zarr ({type(exc).__name__}: {exc}).",
                         "check that the path is a Zarr v2/v3 store, or re-create it") from exc


def _zarr_array_names(group):
    import zarr

    return sorted(name for name, node in group.members(max_depth=None)
                  if isinstance(node, zarr.Array))


def open_dataset(path, dataset):
    """Open a Zarr v2/v3 store's root array, or array `dataset` in its group.

    Spacing and origin from the array's or its groups' attributes (see
    :func:`~snakestream.io.metadata.hierarchy_spacing` and
    :func:`~snakestream.io.metadata.hierarchy_origin`: 'origin'/'offset' z, y, x µm,
    or the OME 'translation' of the array's level), axes and channel labels from
    an OME-Zarr group's 'multiscales' and 'omero', else axes from the array's dimension
    names (v3 ``dimension_names``, xarray's ``_ARRAY_DIMENSIONS``); contract in
    :mod:`snakestream.io.datasets`.
    """
    import zarr

    root = _zarr_node(path)
    if isinstance(root, zarr.Array):
        no_dataset(path, dataset, "root-array Zarr")
        name, array, groups = None, root, []
    else:
        name = pick_dataset(path, dataset, lambda n: isinstance(root.get(n), zarr.Array),
                            lambda: _zarr_array_names(root))
        array = root[name]
        groups = [(dict((root[g] if g else root).attrs), rel) for g, rel in ancestors(name)]
    found = hierarchy_spacing(dict(array.attrs), groups)
    names = (getattr(array.metadata, "dimension_names", None)
             or array.attrs.get("_ARRAY_DIMENSIONS"))
    axes, labels = hierarchy_axes(groups) or (named_axes(names), None)
    driver = _tensorstore_driver(_array_dir(path, name), array.metadata.zarr_format)
    return Opened(name, array.shape, np.dtype(array.dtype), array.chunks, found,
                  functools.partial(_read_zarr, path, name, driver), axes, labels,
                  hierarchy_origin(dict(array.attrs), groups))


def group_members(path, group):
    """A group's attributes and the arrays directly in it (only metadata is read).

    Parameters
    ----------
    path : str
        Zarr v2/v3 store.
    group : str
        Group path inside it ("" for the root).

    Returns
    -------
    (dict, dict)
        The group's attributes, and ``{name: (shape, attrs)}`` of its child arrays
        (shape in the array's own axis order); ({}, {}) when `group` is not a group.
    """
    import zarr

    root = _zarr_node(path)
    node = root.get(group) if group else root
    if not isinstance(node, zarr.Group):
        return {}, {}
    return dict(node.attrs), {name: (tuple(arr.shape), dict(arr.attrs))
                              for name, arr in node.arrays()}


def _array_dir(path, name):
    return os.path.join(path, *name.split("/")) if name else path


def _tensorstore_driver(folder, zarr_format):
    """"zarr" or "zarr3" if tensorstore opens the array in `folder`, else None (zarr-python)."""
    driver = "zarr3" if zarr_format == 3 else "zarr"
    try:
        open_array(file_spec(folder, driver), read=True)
    except ValueError:  # a codec or filter tensorstore does not have
        return None
    return driver


def _read_zarr(path, name, driver, slices):
    """Region `slices` (a slice or int per axis) of array `name` (None: root) in store
    `path`, read by tensorstore.

    `driver` is tensorstore's ("zarr", "zarr3"), or None to read with zarr-python (codecs
    tensorstore does not have). Only the chunks the region touches are read; the store
    is opened for this read only.
    """
    if driver is None:
        node = _zarr_node(path)
        return (node if name is None else node[name])[slices]
    try:
        return read_region(open_array(file_spec(_array_dir(path, name), driver), read=True),
                           slices)
    except ValueError as exc:
        file, reason = failed_file(exc, label(path, name))
        raise InputError(file, f"corrupt Zarr chunk ({reason}).",
                         "re-create the Zarr array") from exc


def zarr_compressor(zarr_format):
    """The outputs' compressor, blosc/zstd level 3 with byte shuffle, for Zarr v2 or v3."""
    if zarr_format == 2:
        import numcodecs

        return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def write_dataset(path, array, spacing, origin, dataset, chunks, zarr_format):
    """Write `array` as a new Zarr store: a root array, or array `dataset` in a group.

    `chunks` (z, y, x), `zarr_format` 2 or 3; spacing and origin go to attributes
    'spacing' and 'origin' (z, y, x, µm). Contract in :mod:`snakestream.io.datasets`.
    """
    import zarr

    kwargs = dict(shape=array.shape, chunks=chunks, dtype=array.dtype,
                  compressors=zarr_compressor(zarr_format),
                  attributes=grid_attrs(spacing, origin))
    if dataset:
        group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
        target = group.create_array(dataset.strip("/"), **kwargs)
    else:
        target = zarr.create_array(path, zarr_format=zarr_format, **kwargs)
    target[...] = array


def grid_attrs(spacing, origin=None):
    """Attributes 'spacing' and 'origin' (z, y, x, µm; origin 0 when None) of an array."""
    origin = np.zeros(3) if origin is None else origin
    return {"spacing": [float(v) for v in spacing], "origin": [float(v) for v in origin]}


def grid_origin(attrs):
    """Attribute 'origin' (z, y, x, µm) of an output array as float64 (3,); 0 when absent
    (stores written before origins were kept)."""
    return np.asarray(attrs.get("origin", [0.0, 0.0, 0.0]), dtype=np.float64)


def zarr_layout(chunks, shard_chunks=None):
    """``create_array`` keywords for a write unit, sharded when ``shard_chunks`` is given.

    Parameters
    ----------
    chunks : tuple of int
        The write unit (chunk, or shard when sharded), z, y, x (a trailing vector
        axis is allowed).
    shard_chunks : tuple of int, optional
        Chunks inside each shard, as many axes as ``chunks``, dividing it.
    """
    if shard_chunks is None:
        return {"chunks": tuple(chunks)}
    return {"shards": tuple(chunks), "chunks": tuple(shard_chunks)}


def create_zarr(path, shape, dtype, chunks, spacing, attrs=None, *, origin=None,
                zarr_format=2, shard_chunks=None):
    """Create (overwriting) a Zarr array at the root of `path` for outputs.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``*.zarr`` directory.
    shape, chunks : tuple of int
        Array and chunk shape (z, y, x) (a trailing vector axis is allowed); with
        ``shard_chunks``, ``chunks`` is the shard shape.
    dtype : numpy dtype
        Voxel type.
    spacing : sequence of 3 float
        Voxel size (z, y, x) in µm, stored as attribute 'spacing'.
    attrs : dict, optional
        Extra JSON attributes.
    origin : sequence of 3 float, optional
        Position of voxel 0's centre (z, y, x) in µm, stored as attribute 'origin'
        (default 0).
    zarr_format : {2, 3}
        Zarr version of the store.
    shard_chunks : tuple of int, optional
        Chunks inside each shard (Zarr v3 only), as many axes as ``chunks``.

    Returns
    -------
    zarr.Array
        The new array, open for writing; compressor blosc/zstd; fill value 0.
    """
    import zarr

    path = os.fspath(path)
    spacing = check_spacing(spacing, path, "create_zarr's argument")
    origin = None if origin is None else check_origin(origin, path, "create_zarr's argument")
    attributes = {**(attrs or {}), **grid_attrs(spacing, origin)}
    return zarr.create_array(path, shape=tuple(shape), dtype=dtype, zarr_format=zarr_format,
                             compressors=zarr_compressor(zarr_format), fill_value=0,
                             attributes=attributes, overwrite=True,
                             **zarr_layout(chunks, shard_chunks))


def open_zarr_array(path, mode="r"):
    """Open the Zarr array at the root of `path`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``*.zarr`` directory holding an array at its root.
    mode : {'r', 'r+', 'a'}
        Zarr open mode (never a mode that creates or truncates).

    Returns
    -------
    zarr.Array
        The array, indexed (z, y, x) or (z, y, x, 3) for a displacement field; its
        attributes 'spacing' and 'origin' are (z, y, x) in µm (:func:`grid_origin`).

    Raises
    ------
    InputError
        The path is missing, is not Zarr, or holds a group.
    """
    import zarr

    path = os.fspath(path)
    require_exists(path)
    node = _zarr_node(path, mode=mode)
    if not isinstance(node, zarr.Array):
        raise InputError(path, "holds a Zarr group, not an array.",
                         "point at the array inside it, or delete it and re-run the step")
    return node
