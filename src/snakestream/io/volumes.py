"""Reading and writing 3-D volumes: Zarr (v2, v3, OME-Zarr), N5, HDF5, NRRD, TIFF.

Every array handed out or taken in is indexed (z, y, x); every spacing is a
float64 array of length 3 in µm, z, y, x order. Chunked formats (Zarr, N5,
HDF5) and TIFF are read lazily: a crop reads only the chunks, blocks or pages it
touches. Files are opened per read, never kept open, so many processes can read
the same input at once.

N5 is implemented here (``_n5_*``) because zarr 3 ships no N5 store and the
``zarr-n5`` package only reads N5 (its store is read-only and its codec has no
encoder). Supported N5 compressions: raw, gzip (and zlib), bzip2, xz, blosc and
zstd for reading; raw and gzip for writing.

Bad input ends with one :class:`~snakestream.errors.InputError` line naming the
file and the fix.
"""

import bz2
import collections
import contextlib
import functools
import gzip
import itertools
import json
import lzma
import math
import os
import secrets
import shutil
import struct
import tempfile
import zlib

import numpy as np

from snakestream.errors import InputError
from snakestream.io.downsample import block_mean

__all__ = [
    "Volume",
    "open_volume",
    "read_downsampled",
    "require_finite",
    "write_volume",
    "atomic_path",
    "create_zarr",
    "open_zarr_array",
]

_EXTENSIONS = {
    ".zarr": "zarr",
    ".n5": "n5",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".tif": "tiff",
    ".tiff": "tiff",
}
_SPACING_FIX = "put `spacing: [z, y, x]` (µm) for this volume in the config"
_DEFAULT_CHUNKS = (64, 256, 256)
_SLAB_BUDGET_BYTES = 256 * 2**20

# Length units found in metadata, as µm per unit. ImageJ writes "micron" or "\u00B5m".
_UM_PER_UNIT = {
    **dict.fromkeys(["um", "µm", "μm", "\\u00b5m", "micron", "microns",
                     "micrometer", "micrometers", "micrometre", "micrometres"], 1.0),
    **dict.fromkeys(["nm", "nanometer", "nanometers", "nanometre", "nanometres"], 1e-3),
    **dict.fromkeys(["mm", "millimeter", "millimeters", "millimetre", "millimetres"], 1e3),
}


# ----------------------------------------------------------------------------
# Small shared helpers
# ----------------------------------------------------------------------------

def _um_per_unit(unit, default=1.0):
    """µm per `unit` (a metadata unit string); `default` when `unit` is empty.

    Returns None for a unit that is not a known length unit (e.g. "pixel").
    """
    if unit is None or str(unit).strip() == "":
        return default
    return _UM_PER_UNIT.get(str(unit).strip().lower())


def _floats(value):
    """`value` as a 1-D float64 array, or unchanged if it is not numeric."""
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return value


def _check_spacing(value, where, source):
    """Validate a spacing and return it as a float64 array (z, y, x, µm).

    Parameters
    ----------
    value : sequence of float
        Candidate spacing, z, y, x order, µm.
    where : str
        File the spacing belongs to (for the error message).
    source : str
        Where the value came from, e.g. "the config" or "attribute 'spacing'".
    """
    try:
        spacing = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        spacing = None
    if (spacing is None or spacing.shape != (3,)
            or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0)):
        raise InputError(
            where, f"spacing {value!r} from {source} is not 3 positive finite "
            "numbers (z, y, x in µm).", _SPACING_FIX)
    return spacing


def _format_of(path):
    """Format key ('zarr', 'n5', 'hdf5', 'nrrd', 'tiff') from the path's extension."""
    ext = os.path.splitext(os.fspath(path).rstrip("/\\"))[1].lower()
    if ext not in _EXTENSIONS:
        raise InputError(
            path, f"unknown file extension {ext or '(none)'!r}.",
            "use one of " + ", ".join(sorted(_EXTENSIONS)) + " (convert the volume if needed)")
    return _EXTENSIONS[ext]


def _require_exists(path):
    if not os.path.exists(path):
        raise InputError(
            path, "file not found.",
            f"check the path in the config (relative paths start at {os.getcwd()})")


def _label(path, dataset):
    return f"{path} [{dataset}]" if dataset else str(path)


def _pick_dataset(where, dataset, is_array, list_arrays):
    """Choose the dataset path to open inside a container (not a root array).

    Parameters
    ----------
    where : str
        Container path, for messages.
    dataset : str or None
        Requested dataset path; None picks the only array in the container.
    is_array : callable
        ``is_array(name)`` tells whether an array exists at `name`.
    list_arrays : callable
        ``list_arrays()`` returns all array paths (called only when needed).

    Returns
    -------
    str
        Normalized dataset path ("a/b", no leading slash).
    """
    name = str(dataset).strip("/") if dataset is not None else ""
    if name and is_array(name):
        return name
    available = list_arrays()
    listing = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
    if name:
        raise InputError(where, f"dataset {name!r} not found; datasets in the file: "
                         f"{listing or 'none'}.", "set `dataset` in the config to one of those")
    if len(available) == 1:
        return available[0]
    raise InputError(where, f"no dataset given and the file holds {len(available)} datasets: "
                     f"{listing or 'none'}.", "set `dataset` in the config to one of those")


def _no_dataset(path, dataset, kind):
    if dataset:
        raise InputError(path, f"dataset {dataset!r} given, but a {kind} file holds one volume.",
                         "remove `dataset` for this volume from the config")


# What an opener found: dataset is the resolved path (None: root array); spacing
# is (value, description) from the file's metadata or None; reader(slices) -> array.
_Opened = collections.namedtuple("_Opened", "dataset shape dtype chunks spacing reader")


def _ancestors(name):
    """(group path, path relative to it) for each group above `name`, nearest first."""
    parts = name.split("/")
    return [("/".join(parts[:i]), "/".join(parts[i:])) for i in range(len(parts) - 1, -1, -1)]


# ----------------------------------------------------------------------------
# Volume
# ----------------------------------------------------------------------------

class Volume:
    """Lazy handle on a 3-D volume on disk.

    Attributes
    ----------
    path : str
        File or directory of the volume.
    dataset : str or None
        Dataset path inside a container (Zarr, N5, HDF5) as resolved when
        opening; None for a root array or a single-volume file.
    shape : tuple of int
        Voxel counts (z, y, x).
    dtype : numpy.dtype
        Voxel type (native byte order).
    spacing : numpy.ndarray
        Voxel size in µm, (z, y, x), float64.
    chunks : tuple of int or None
        Storage chunk shape (z, y, x) when chunked, else None.
    """

    def __init__(self, path, dataset, shape, dtype, spacing, reader, chunks=None):
        self.path, self.dataset = str(path), dataset
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.chunks = tuple(int(c) for c in chunks) if chunks else None
        self._reader = reader

    def __repr__(self):
        return (f"Volume({_label(self.path, self.dataset)!r}, shape={self.shape}, "
                f"dtype={self.dtype}, spacing={self.spacing.tolist()})")

    def read(self, region=None):
        """Read the voxels of `region` from disk.

        Parameters
        ----------
        region : tuple of 3 slice or None
            (z, y, x) slices with step 1 inside the volume; None reads everything.

        Returns
        -------
        numpy.ndarray
            Voxels (z, y, x) in native byte order.
        """
        slices = _check_region(region, self.shape, _label(self.path, self.dataset))
        data = np.asarray(self._reader(slices))
        return np.array(data, dtype=self.dtype, copy=None, order="C")


def _check_region(region, shape, where):
    """Normalize `region` to 3 slices with int bounds inside `shape`."""
    if region is None:
        return tuple(slice(0, n) for n in shape)
    if len(region) != 3 or not all(isinstance(s, slice) for s in region):
        raise InputError(where, f"region {region!r} is not 3 slices (z, y, x).",
                         "pass a tuple of 3 slices or None")
    out = []
    for s, n in zip(region, shape):
        start = 0 if s.start is None else int(s.start)
        stop = n if s.stop is None else int(s.stop)
        if s.step not in (None, 1) or not 0 <= start <= stop <= n:
            raise InputError(where, f"region {region!r} is outside the volume of shape {shape}.",
                             "clip the region to the volume shape (steps of 1 only)")
        out.append(slice(start, stop))
    return tuple(out)


def _check_3d(where, shape):
    if len(shape) != 3:
        raise InputError(where, f"data has shape {tuple(shape)} ({len(shape)}-D); "
                         "a 3-D (z, y, x) volume is needed.",
                         "point `dataset` at a 3-D array or save one channel as a 3-D volume")


def open_volume(path, dataset=None, spacing=None):
    """Open a 3-D volume lazily; the format comes from the path's extension.

    Parameters
    ----------
    path : str or os.PathLike
        ``*.zarr`` (v2/v3, OME-Zarr), ``*.n5``, ``*.h5/*.hdf5/*.hdf``,
        ``*.nrrd/*.nhdr`` or ``*.tif/*.tiff``.
    dataset : str, optional
        Dataset path inside a Zarr/N5/HDF5 container. If None, the root array,
        or the only array in the container.
    spacing : sequence of 3 float, optional
        Voxel size (z, y, x) in µm from the config; overrides the file's metadata.

    Returns
    -------
    Volume

    Raises
    ------
    InputError
        Missing file, unknown extension, missing dataset, data not 3-D, bad or
        unknown spacing.
    """
    path = os.fspath(path)
    kind = _format_of(path)
    _require_exists(path)
    opened = _OPENERS[kind](path, dataset)
    where = _label(path, opened.dataset)
    _check_3d(where, opened.shape)
    if spacing is not None:
        spacing = _check_spacing(spacing, where, "the config")
    elif opened.spacing is not None:
        value, source = opened.spacing
        spacing = _check_spacing(value, where, f"the file's {source}")
    else:
        raise InputError(where, "voxel spacing unknown: neither the config nor the "
                         "file's metadata gives it.", _SPACING_FIX)
    return Volume(path, opened.dataset, opened.shape, opened.dtype, spacing,
                  opened.reader, opened.chunks)


# ----------------------------------------------------------------------------
# Spacing found in metadata: each returns (value zyx µm, description) or None
# ----------------------------------------------------------------------------

def _xyz_resolution(value):
    """Spacing (z, y, x) from an x, y, z list or {"dimensions": [x,y,z], "unit": u}."""
    unit = None
    if isinstance(value, dict):
        value, unit = value.get("dimensions"), value.get("unit")
    factor = _um_per_unit(unit)
    values = _floats(value)
    if factor is None or not isinstance(values, np.ndarray):
        return value
    return values[::-1] * factor


def _attrs_spacing(attrs):
    """Spacing from 'spacing' (z,y,x), 'pixelResolution' or 'resolution' (x,y,z)."""
    if "spacing" in attrs:
        return _floats(attrs["spacing"]), "attribute 'spacing'"
    for key in ("pixelResolution", "resolution"):
        if key in attrs:
            return _xyz_resolution(attrs[key]), f"attribute {key!r}"
    return None


def _ome_scale(transforms):
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale":
            return _floats(t.get("scale"))
    return None


def _ome_units(axes):
    """µm per unit of the last 3 OME axes (1 where the unit is missing or unknown)."""
    if not axes or not all(isinstance(a, dict) for a in axes[-3:]):
        return np.ones(3)
    return np.array([_um_per_unit(a.get("unit")) or 1.0 for a in axes[-3:]])


def _ome_spacing(attrs, relpath):
    """Spacing of dataset `relpath` from OME-Zarr 'multiscales' in a group's `attrs`."""
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    for ms in multiscales or []:
        for ds in ms.get("datasets", []):
            if str(ds.get("path", "")).strip("/") != relpath:
                continue
            scale = _ome_scale(ds.get("coordinateTransformations"))
            if scale is None:
                return None
            overall = _ome_scale(ms.get("coordinateTransformations"))
            if isinstance(scale, np.ndarray) and len(scale) >= 3:
                if isinstance(overall, np.ndarray) and overall.shape == scale.shape:
                    scale = scale * overall
                scale = scale[-3:] * _ome_units(ms.get("axes"))
            return scale, "OME-Zarr 'multiscales'"
    return None


def _hierarchy_spacing(array_attrs, ancestors):
    """Spacing of an array in a Zarr/N5 hierarchy.

    Parameters
    ----------
    array_attrs : dict
        The array's own attributes (checked first).
    ancestors : list of (dict, str)
        Attributes of each enclosing group, nearest first, with the array's path
        relative to that group. A group's OME 'multiscales' entry for the array
        wins; else a group-level resolution times the array's
        'downsamplingFactors' (x, y, z; the n5-viewer convention).
    """
    found = _attrs_spacing(array_attrs)
    if found is not None:
        return found
    factors = _floats(array_attrs.get("downsamplingFactors", [1, 1, 1]))
    for attrs, relpath in ancestors:
        found = _ome_spacing(attrs, relpath)
        if found is not None:
            return found
        found = _attrs_spacing(attrs)
        if found is not None:
            return _scaled(found[0], factors), f"group {found[1]} x 'downsamplingFactors'"
    return None


def _scaled(spacing, factors_xyz):
    """`spacing` (z, y, x) times x, y, z `factors_xyz`, when both are 3 numbers."""
    ok = all(isinstance(v, np.ndarray) and v.shape == (3,) for v in (spacing, factors_xyz))
    return spacing * factors_xyz[::-1] if ok else spacing


# ----------------------------------------------------------------------------
# Zarr
# ----------------------------------------------------------------------------

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


def _open_zarr(path, dataset):
    import zarr

    root = _zarr_node(path)
    if isinstance(root, zarr.Array):
        _no_dataset(path, dataset, "root-array Zarr")
        name, array, ancestors = None, root, []
    else:
        name = _pick_dataset(path, dataset, lambda n: isinstance(root.get(n), zarr.Array),
                             lambda: _zarr_array_names(root))
        array = root[name]
        ancestors = [(dict((root[g] if g else root).attrs), rel) for g, rel in _ancestors(name)]
    found = _hierarchy_spacing(dict(array.attrs), ancestors)
    return _Opened(name, array.shape, np.dtype(array.dtype), array.chunks, found,
                   functools.partial(_read_zarr, path, name))


def _read_zarr(path, name, slices):
    node = _zarr_node(path)
    return (node if name is None else node[name])[slices]


# ----------------------------------------------------------------------------
# N5: attributes.json per node; blocks at "<x>/<y>/<z>" with a big-endian header
# ----------------------------------------------------------------------------

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


def _open_n5(path, dataset):
    if _n5_is_dataset(_n5_attrs(path)):
        _no_dataset(path, dataset, "root-dataset N5")
        name, ds_dir, ancestors = None, path, []
    else:
        name = _pick_dataset(path, dataset, lambda n: _n5_is_dataset(_n5_attrs(_n5_dir(path, n))),
                             lambda: _n5_dataset_names(path))
        ds_dir = _n5_dir(path, name)
        ancestors = [(_n5_attrs(_n5_dir(path, g)), rel) for g, rel in _ancestors(name)]
    shape, block, dtype, _ = _n5_meta(ds_dir, _label(path, name))
    found = _hierarchy_spacing(_n5_attrs(ds_dir), ancestors)
    return _Opened(name, shape, dtype, block, found, functools.partial(_n5_read, ds_dir))


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


def _n5_write(root, name, array, spacing, chunks, compression="gzip"):
    """Write `array` (z, y, x) as N5 dataset `name` (None: the root) under `root`."""
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


# ----------------------------------------------------------------------------
# HDF5
# ----------------------------------------------------------------------------

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
            return _floats(attrs[key]), f"HDF5 attribute {key!r}"
    return None


def _open_h5(path, dataset):
    import h5py

    with _h5_file(path) as fh:
        name = _pick_dataset(path, dataset, lambda n: isinstance(fh.get(n), h5py.Dataset),
                             lambda: _h5_dataset_names(fh))
        ds = fh[name]
        return _Opened(name, ds.shape, ds.dtype, ds.chunks, _h5_spacing(ds.attrs),
                       functools.partial(_read_h5, path, name))


def _read_h5(path, name, slices):
    with _h5_file(path) as fh:
        return fh[name][slices]


# ----------------------------------------------------------------------------
# NRRD (pynrrd; header axes are fastest-first, i.e. x, y, z)
# ----------------------------------------------------------------------------

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
        values, source = _floats(header["spacings"]), "NRRD 'spacings'"
    else:
        return None
    units = header.get("space units") or []
    factors = [_um_per_unit(u) for u in units]
    if len(factors) == len(values) and None not in factors:
        values = values * np.asarray(factors)
    return values[::-1], source


def _open_nrrd(path, dataset):
    _no_dataset(path, dataset, "NRRD")
    header, _ = _nrrd_header(path)
    shape = tuple(int(n) for n in np.asarray(header["sizes"])[::-1])
    dtype = _nrrd_dtype(header, path)
    return _Opened(None, shape, dtype, None, _nrrd_spacing(header),
                   functools.partial(_read_nrrd, path))


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


# ----------------------------------------------------------------------------
# TIFF (tifffile; pages are read through its Zarr view, so a crop reads its z pages)
# ----------------------------------------------------------------------------

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
    factor = _um_per_unit(meta.get("unit"), default=None)
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
    factors = [_um_per_unit(pixels.get(k + "Unit")) for k in keys]
    if None in factors:
        return None
    return np.array([float(pixels[k]) for k in keys]) * factors, "OME-TIFF PhysicalSize"


def _tiff_spacing(tif):
    """Spacing from ImageJ metadata, OME-XML, or tifffile's JSON 'spacing' (z, y, x)."""
    found = _imagej_spacing(tif) or _ome_tiff_spacing(tif)
    if found is None and tif.shaped_metadata and "spacing" in tif.shaped_metadata[0]:
        found = _floats(tif.shaped_metadata[0]["spacing"]), "TIFF metadata 'spacing'"
    return found


def _open_tiff(path, dataset):
    _no_dataset(path, dataset, "TIFF")
    with _tiff_file(path) as tif:
        series = tif.series[0]
        return _Opened(None, tuple(series.shape), series.dtype, None, _tiff_spacing(tif),
                       functools.partial(_read_tiff, path))


def _read_tiff(path, slices):
    import zarr

    with _tiff_file(path) as tif, tif.series[0].aszarr() as store:
        return zarr.open(store, mode="r")[slices]


_OPENERS = {"zarr": _open_zarr, "n5": _open_n5, "hdf5": _open_h5,
            "nrrd": _open_nrrd, "tiff": _open_tiff}


# ----------------------------------------------------------------------------
# Downsampling and checks
# ----------------------------------------------------------------------------

def _check_factors(factors, where):
    values = np.asarray(factors)
    if values.shape != (3,) or not np.all(values == np.round(values)) or np.any(values < 1):
        raise InputError(where, f"downsampling factors {factors!r} are not 3 positive integers.",
                         "give integer factors (z, y, x) >= 1")
    return tuple(int(v) for v in values)


def _slab_depth(volume, fz):
    """Planes per read: a multiple of `fz`, aligned with z chunks if that fits the budget."""
    if not volume.chunks:
        return fz
    aligned = -(-volume.chunks[0] // fz) * fz
    plane_bytes = volume.shape[1] * volume.shape[2] * volume.dtype.itemsize
    return aligned if aligned * plane_bytes <= _SLAB_BUDGET_BYTES else fz


def read_downsampled(volume, factors):
    """Block-mean downsample a volume, streaming over z slabs.

    Parameters
    ----------
    volume : Volume
        Source volume.
    factors : sequence of 3 int
        Integer factors (z, y, x) >= 1.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``ceil(volume.shape / factors)``; partial edge
        blocks are averaged over the voxels that exist. Its spacing is
        ``volume.spacing * factors`` µm. Peak memory is about one slab of
        z-chunk depth (or ``factors[0]`` planes) plus the output.
    """
    factors = _check_factors(factors, _label(volume.path, volume.dataset))
    out_shape = [-(-n // f) for n, f in zip(volume.shape, factors)]
    out = np.empty(out_shape, dtype=np.float32)
    depth = _slab_depth(volume, factors[0])
    for z0 in range(0, volume.shape[0], depth):
        z1 = min(z0 + depth, volume.shape[0])
        slab = volume.read((slice(z0, z1), slice(None), slice(None)))
        out[z0 // factors[0]: -(-z1 // factors[0])] = block_mean(slab, factors)
    return out


def require_finite(array, where):
    """Raise InputError naming `where` if `array` holds any NaN or infinity.

    Parameters
    ----------
    array : numpy.ndarray
        Any array; integer arrays always pass.
    where : str
        File (and dataset) the array came from, for the message.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.inexact):
        return
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InputError(where, f"{bad} of {array.size} voxels are NaN or infinite.",
                         "replace non-finite voxels (e.g. with 0) or mask them before registration")


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _replace(src, dst):
    """Move `src` onto `dst`, replacing a file or directory already there."""
    if os.path.lexists(dst) and (os.path.isdir(dst) or os.path.isdir(src)):
        folder, name = os.path.split(dst)
        old = os.path.join(folder, f".{name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.rename(dst, old)
        try:
            os.replace(src, dst)
        except OSError:
            os.rename(old, dst)
            raise
        _remove(old)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; move it onto `path` on success.

    The temporary name is ``.<name>.tmp-<pid>-<random><suffix>`` in the same
    directory (created if missing), keeping the suffix so format detection
    works. On normal exit it replaces `path` (file or directory); on an
    exception the temporary is removed and the exception re-raised.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(name)[1]
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}")
    try:
        yield tmp
        _replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _zarr_compressor(zarr_format):
    if zarr_format == 2:
        import numcodecs

        return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def _write_zarr(path, array, spacing, dataset, chunks, zarr_format):
    import zarr

    kwargs = dict(shape=array.shape, chunks=chunks, dtype=array.dtype,
                  compressors=_zarr_compressor(zarr_format),
                  attributes={"spacing": [float(v) for v in spacing]})
    if dataset:
        group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
        target = group.create_array(dataset.strip("/"), **kwargs)
    else:
        target = zarr.create_array(path, zarr_format=zarr_format, **kwargs)
    target[...] = array


def _write_h5(path, array, spacing, dataset, chunks):
    import h5py

    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset(dataset or "data", data=array, chunks=chunks, compression="gzip")
        ds.attrs["element_size_um"] = np.asarray(spacing, dtype=np.float64)


def _nrrd_header_for(spacing):
    return {"encoding": "raw", "space dimension": 3, "kinds": ["domain"] * 3,
            "space directions": np.diag(np.asarray(spacing, dtype=np.float64)[::-1]),
            "space units": ["microns"] * 3}


def _write_nrrd(path, data, spacing):
    """Write an attached-header NRRD (raw) or, for ``*.nhdr``, header plus ``*.raw``."""
    import nrrd

    if not path.lower().endswith(".nhdr"):
        with atomic_path(path) as tmp:
            nrrd.write(tmp, data, _nrrd_header_for(spacing), index_order="C")
        return
    folder, name = os.path.split(os.path.abspath(path))
    raw = os.path.splitext(name)[0] + ".raw"
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}.tmp-") as tmp:
        nrrd.write(os.path.join(tmp, name), data, _nrrd_header_for(spacing), index_order="C")
        os.replace(os.path.join(tmp, raw), os.path.join(folder, raw))
        os.replace(os.path.join(tmp, name), os.path.join(folder, name))


def _write_tiff(path, array, spacing):
    """ImageJ hyperstack for uint8/uint16/float32, else tifffile JSON metadata."""
    import tifffile

    sz, sy, sx = (float(v) for v in spacing)
    if array.dtype in (np.uint8, np.uint16, np.float32):
        tifffile.imwrite(path, array, imagej=True, resolution=(1 / sx, 1 / sy),
                         metadata={"spacing": sz, "unit": "um", "axes": "ZYX"})
    else:
        tifffile.imwrite(path, array, resolution=(1 / sx, 1 / sy),
                         metadata={"spacing": [sz, sy, sx]})


def write_volume(path, array, spacing, dataset=None, chunks=None, zarr_format=2):
    """Write a 3-D array with spacing metadata that :func:`open_volume` reads back.

    The whole file or container at `path` is written under a temporary name in
    the same folder, then renamed onto `path` (replacing what was there).

    Parameters
    ----------
    path : str or os.PathLike
        Output; format from the extension, as for :func:`open_volume`.
    array : numpy.ndarray
        Voxels (z, y, x).
    spacing : sequence of 3 float
        Voxel size (z, y, x) in µm. Stored as Zarr attribute 'spacing' (z, y, x),
        N5 'pixelResolution' (x, y, z, unit "um"), HDF5 'element_size_um'
        (z, y, x), NRRD 'space directions', TIFF ImageJ spacing/resolution.
    dataset : str, optional
        Dataset path in a Zarr/N5/HDF5 container; None writes a root array
        (HDF5: dataset "data"). Must be None for NRRD and TIFF.
    chunks : tuple of 3 int, optional
        Chunk/block shape (z, y, x) for Zarr, N5, HDF5; default up to (64, 256, 256).
    zarr_format : {2, 3}
        Zarr format version.
    """
    path = os.fspath(path)
    kind = _format_of(path)
    array = np.asarray(array)
    _check_3d(path, array.shape)
    spacing = _check_spacing(spacing, path, "write_volume's argument")
    if kind in ("nrrd", "tiff"):
        _no_dataset(path, dataset, kind.upper())
    chunks = tuple(min(int(c), n) for c, n in zip(chunks or _DEFAULT_CHUNKS, array.shape))
    if kind == "nrrd":  # handles its own atomic rename (.nhdr writes two files)
        return _write_nrrd(path, array, spacing)
    with atomic_path(path) as tmp:
        if kind == "zarr":
            _write_zarr(tmp, array, spacing, dataset, chunks, zarr_format)
        elif kind == "n5":
            _n5_write(tmp, dataset.strip("/") if dataset else None, array, spacing, chunks)
        elif kind == "hdf5":
            _write_h5(tmp, array, spacing, dataset, chunks)
        else:
            _write_tiff(tmp, array, spacing)


# ----------------------------------------------------------------------------
# Zarr outputs written block by block
# ----------------------------------------------------------------------------

def create_zarr(path, shape, dtype, chunks, spacing, attrs=None):
    """Create (overwriting) a Zarr v2 array at the root of `path` for outputs.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``*.zarr`` directory.
    shape, chunks : tuple of int
        Array and chunk shape (z, y, x) (a trailing vector axis is allowed).
    dtype : numpy dtype
        Voxel type.
    spacing : sequence of 3 float
        Voxel size (z, y, x) in µm, stored as attribute 'spacing'.
    attrs : dict, optional
        Extra JSON attributes.

    Returns
    -------
    zarr.Array
        The new array, open for writing; compressor blosc/zstd; fill value 0.
    """
    import zarr

    path = os.fspath(path)
    spacing = _check_spacing(spacing, path, "create_zarr's argument")
    attributes = {**(attrs or {}), "spacing": [float(v) for v in spacing]}
    return zarr.create_array(path, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype,
                             zarr_format=2, compressors=_zarr_compressor(2), fill_value=0,
                             attributes=attributes, overwrite=True)


def open_zarr_array(path, mode="r"):
    """Open the Zarr array at the root of `path`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``*.zarr`` directory holding an array at its root.
    mode : {'r', 'r+', 'a'}
        Zarr open mode (never a mode that creates or truncates).

    Raises
    ------
    InputError
        The path is missing, is not Zarr, or holds a group.
    """
    import zarr

    path = os.fspath(path)
    _require_exists(path)
    node = _zarr_node(path, mode=mode)
    if not isinstance(node, zarr.Array):
        raise InputError(path, "holds a Zarr group, not an array.",
                         "point at the array inside it, or delete it and re-run the step")
    return node


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (the slab/stage markers of the workflow)."""
    import json

    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)
