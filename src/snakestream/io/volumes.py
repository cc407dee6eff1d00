"""Reading and writing 3-D volumes, whatever the format: the :class:`Volume` handle.

Every array handed out or taken in is indexed (z, y, x); every spacing and origin
is a float64 array of length 3 in µm, z, y, x order. Voxel ``i`` of a volume sits
at the physical point ``origin + i * spacing``: the origin is voxel 0's centre, from
the file (NRRD 'space origin', the OME-Zarr 'translation' of the opened level,
Zarr/N5/HDF5 attribute 'origin' or 'offset'; TIFF has none) or the config, else 0.
A stored array with time or channel axes (OME-Zarr (t, c, z, y, x), a 4-D
(c, z, y, x) N5 or HDF5) is opened at one time point and channel
(:mod:`~snakestream.io.selection`), and its :class:`Volume` reads that 3-D view.
Chunked formats (Zarr, N5, HDF5) and TIFF are read lazily: a crop reads only the
chunks, blocks or pages it touches. Files are opened per read, never kept open, so
many processes can read the same input at once.

This module picks the format from the path's extension and dispatches to the
format modules (:mod:`~snakestream.io.zarr_store`, :mod:`~snakestream.io.n5`,
:mod:`~snakestream.io.hdf5`, :mod:`~snakestream.io.nrrd_format`,
:mod:`~snakestream.io.tiff`); spacing found in metadata is read by
:mod:`~snakestream.io.metadata`.

Bad input ends with one :class:`~snakestream.errors.InputError` line naming the
file and the fix.
"""

import os

import numpy as np

from snakestream.errors import InputError
from snakestream.io import hdf5, n5, nrrd_format, tiff, zarr_store
from snakestream.io.atomic import atomic_path
from snakestream.io.datasets import label, no_dataset, require_exists
from snakestream.io.metadata import SPACING_FIX, as_floats, check_origin, check_spacing
from snakestream.io.selection import NOT_3D_FIX, conventional_axes, full_index, select, spatial

__all__ = ["Volume", "count_nonfinite", "format_of", "nonfinite_error", "open_volume",
           "require_finite", "write_volume"]

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
_OPENERS = {"zarr": zarr_store.open_dataset, "n5": n5.open_dataset,
            "hdf5": hdf5.open_dataset, "nrrd": nrrd_format.open_dataset,
            "tiff": tiff.open_dataset}
_DEFAULT_CHUNKS = (64, 256, 256)


def format_of(path):
    """Format key ('zarr', 'n5', 'hdf5', 'nrrd', 'tiff') from the path's extension."""
    ext = os.path.splitext(os.fspath(path).rstrip("/\\"))[1].lower()
    if ext not in _EXTENSIONS:
        raise InputError(
            path, f"unknown file extension {ext or '(none)'!r}.",
            "use one of " + ", ".join(sorted(_EXTENSIONS)) + " (convert the volume if needed)")
    return _EXTENSIONS[ext]


class Volume:
    """Lazy handle on a 3-D volume on disk.

    Made by :func:`open_volume`; reading goes through :meth:`read`.

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
    origin : numpy.ndarray
        Physical position of voxel 0's centre in µm, (z, y, x), float64 (shape (3,));
        voxel ``i`` is at ``origin + i * spacing``.
    chunks : tuple of int or None
        Storage chunk shape (z, y, x) when chunked, else None.
    selection : tuple
        Index of the stored array this volume is (:func:`~snakestream.io.selection.select`):
        an int on each time or channel axis, None on the 3 space axes; (None, None,
        None) for a 3-D array.
    channel, timepoint : int, str or None
        The selection as asked for (:func:`open_volume`), so the same image's other
        pyramid levels open at the same channel and time point.
    nan_fill : float or None
        Value that NaN and infinite voxels are read as (the config's ``nan_fill``);
        None reads them as stored. Each read that replaces some calls ``log``.
    log : callable
        Gets one line per read that replaced voxels (``print``: a job's log).
    """

    def __init__(self, path, dataset, shape, dtype, spacing, reader, *, origin=None, chunks=None,
                 selection=(None, None, None), channel=None, timepoint=None, nan_fill=None,
                 log=print):
        self.path, self.dataset = str(path), dataset
        self.nan_fill, self.log = (None if nan_fill is None else float(nan_fill)), log
        self.channel, self.timepoint = channel, timepoint  # as asked (open_volume's keys)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
        self.chunks = tuple(int(c) for c in chunks) if chunks else None
        self.selection = tuple(selection)
        self._reader = reader

    def __repr__(self):
        picked = [i for i in self.selection if i is not None]
        at = f", at={tuple(picked)}" if picked else ""
        return (f"Volume({label(self.path, self.dataset)!r}, shape={self.shape}, "
                f"dtype={self.dtype}, spacing={self.spacing.tolist()}, "
                f"origin={self.origin.tolist()}{at})")

    def read(self, region=None):
        """Read the voxels of `region` from disk.

        Parameters
        ----------
        region : tuple of 3 slice or None
            (z, y, x) slices in voxels, step 1, inside the volume; None reads
            everything.

        Returns
        -------
        numpy.ndarray
            Voxels (z, y, x) of shape ``(stop - start)`` per axis, dtype
            :attr:`dtype` in native byte order, C-contiguous.

        Raises
        ------
        InputError
            `region` is not 3 slices of step 1 inside :attr:`shape`.
        """
        slices = _check_region(region, self.shape, label(self.path, self.dataset))
        data = np.asarray(self._reader(full_index(self.selection, slices)))
        return self._fill(np.array(data, dtype=self.dtype, copy=None, order="C"), slices)

    def _fill(self, data, slices):
        """``data`` with its non-finite voxels set to :attr:`nan_fill` (when set), logged."""
        if self.nan_fill is None or not np.issubdtype(data.dtype, np.inexact):
            return data
        bad = ~np.isfinite(data)
        n = int(np.count_nonzero(bad))
        if n:
            data = data.copy() if not data.flags.writeable else data
            data[bad] = self.nan_fill
            box = [(s.start, s.stop) for s in slices]
            self.log(f"{label(self.path, self.dataset)}: {n} of {data.size} voxels read "
                     f"(z,y,x {box}) were NaN or infinite, replaced by nan_fill {self.nan_fill:g}")
        return data

    def __getitem__(self, key):
        """``vol[z0:z1]``, ``vol[a:b, c:d, e:f]``: :meth:`read` with NumPy's slicing
        (missing axes are whole, stops past the end are clipped; slices of step 1 only)."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        return self.read(tuple(slice(*s.indices(n)[:2]) if isinstance(s, slice) else s
                               for s, n in zip(key, self.shape)))


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
                         "a 3-D (z, y, x) volume is needed.", NOT_3D_FIX)


def _spatial_spacing(value, axes):
    """A metadata spacing (or origin) with one value per stored axis cut to its space
    axes (z, y, x)."""
    values = as_floats(value)
    if isinstance(values, np.ndarray) and len(axes) > 3 and values.shape == (len(axes),):
        return np.asarray(spatial(values, axes))
    return value


def _origin_of(opened, origin, axes, where):
    """The volume's origin: the config's, else the file's, else 0 (µm, z, y, x)."""
    if origin is not None:
        return check_origin(origin, where, "the config")
    if opened.origin is None:
        return np.zeros(3)
    value, source = opened.origin
    return check_origin(_spatial_spacing(value, axes), where, f"the file's {source}")


def open_volume(path, dataset=None, spacing=None, *, origin=None, channel=None, timepoint=None,
                nan_fill=None):
    """Open a 3-D volume lazily; the format comes from the path's extension.

    An array with time or channel axes is opened at `timepoint` and `channel`; an
    axis of length 1 needs no selection. Its axes are the OME-Zarr
    ``multiscales[].axes``, else by dimension count: (c, z, y, x) for 4-D and
    (t, c, z, y, x) for 5-D (:mod:`~snakestream.io.selection`).

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
    origin : sequence of 3 float, optional
        Position of voxel 0's centre (z, y, x) in µm from the config; overrides the
        file's metadata (NRRD 'space origin', OME-Zarr 'translation' of the opened
        level, Zarr/N5/HDF5 attribute 'origin' or 'offset'; TIFF has none). Without
        either, 0.
    channel : int or str, optional
        Index on the channel axis, or an OME channel label (``omero.channels[].label``).
    timepoint : int, optional
        Index on the time axis.
    nan_fill : float, optional
        Read NaN and infinite voxels as this value (:attr:`Volume.nan_fill`).

    Returns
    -------
    Volume
        Handle with shape (z, y, x), native-order dtype, spacing and origin (z, y, x)
        µm; no voxels are read until :meth:`Volume.read`.

    Raises
    ------
    InputError
        Missing file, unknown extension, missing dataset, data without 3 space axes,
        a time or channel axis longer than 1 without its key (the message names the
        axes and the key), a bad `channel` or `timepoint`, bad or unknown spacing,
        a bad origin.
    """
    path = os.fspath(path)
    kind = format_of(path)
    require_exists(path)
    opened = _OPENERS[kind](path, dataset)
    where = label(path, opened.dataset)
    axes = opened.axes or conventional_axes(len(opened.shape))
    selection = select(where, opened.shape, axes, channel=channel, timepoint=timepoint,
                       labels=opened.labels)
    if spacing is not None:
        spacing = check_spacing(spacing, where, "the config")
    elif opened.spacing is not None:
        value, source = opened.spacing
        spacing = check_spacing(_spatial_spacing(value, axes), where, f"the file's {source}")
    else:
        raise InputError(where, "voxel spacing unknown: neither the config nor the "
                         "file's metadata gives it.", SPACING_FIX)
    chunks = spatial(opened.chunks, axes) if opened.chunks else None
    return Volume(path, opened.dataset, spatial(opened.shape, axes), opened.dtype, spacing,
                  opened.reader, origin=_origin_of(opened, origin, axes, where), chunks=chunks,
                  selection=selection, channel=channel, timepoint=timepoint, nan_fill=nan_fill)


def _nonfinite(array):
    """Number of NaN and infinite values of an array (0 for integer arrays)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return array.size - int(np.count_nonzero(np.isfinite(array)))


def nonfinite_error(where, bad, total, *, what="voxels", key=None):
    """The InputError of `bad` NaN or infinite values among `total`, and how to run anyway.

    Parameters
    ----------
    where : str
        File (and dataset, or block) the values came from.
    bad, total : int
    what : str
        What the values are ("voxels", "voxels at full resolution").
    key : str, optional
        The config entry of the volume ("moving"); the fix names it.
    """
    entry = (f"the config's {key} entry" if key else
             "this volume's config entry (fixed, moving or extra_volumes[])")
    return InputError(where, f"{bad} of {total} {what} are NaN or infinite.",
                      f"set `nan_fill: 0` in {entry} to read NaN and infinite voxels as 0 "
                      "(the jobs log how many), or replace them in the file.")


def require_finite(array, where, *, what="voxels"):
    """Raise InputError naming `where` if `array` holds any NaN or infinity.

    Parameters
    ----------
    array : numpy.ndarray
        Any array; integer arrays always pass.
    where : str
        File (and dataset) the array came from, for the message.
    what : str
        What the array's values are, for the message ("voxels of block z0000_y0000_x0001").

    Raises
    ------
    InputError
        Some voxels are NaN or infinite (:func:`nonfinite_error`).
    """
    bad = _nonfinite(array)
    if bad:
        raise nonfinite_error(where, bad, np.size(array), what=what)


def count_nonfinite(volume):
    """NaN and infinite voxels of a whole volume at full resolution, read slab by slab.

    Parameters
    ----------
    volume : Volume
        Read as stored (its ``nan_fill`` is not applied).

    Returns
    -------
    int
        The count (0 for an integer volume, which is not read).
    """
    if not np.issubdtype(volume.dtype, np.inexact):
        return 0
    plane = int(np.prod(volume.shape[1:]))
    depth = max(1, min(volume.chunks[0] if volume.chunks else 1 << 30,
                       (1 << 24) // max(plane, 1)))
    raw = Volume(volume.path, volume.dataset, volume.shape, volume.dtype, volume.spacing,
                 volume._reader, selection=volume.selection)
    return sum(_nonfinite(raw.read((slice(z, min(z + depth, volume.shape[0])),
                                    slice(None), slice(None))))
               for z in range(0, volume.shape[0], depth))


def write_volume(path, array, spacing, *, origin=None, dataset=None, chunks=None, zarr_format=2):
    """Write a 3-D array with spacing and origin metadata that :func:`open_volume` reads back.

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
    origin : sequence of 3 float, optional
        Voxel 0's centre (z, y, x) in µm, default 0. Stored as attribute 'origin'
        (z, y, x) in Zarr, N5 and HDF5, NRRD 'space origin'; TIFF cannot store one
        (a non-zero origin is an error).
    dataset : str, optional
        Dataset path in a Zarr/N5/HDF5 container; None writes a root array
        (HDF5: dataset "data"). Must be None for NRRD and TIFF.
    chunks : tuple of 3 int, optional
        Chunk/block shape (z, y, x) for Zarr, N5, HDF5; default up to (64, 256, 256).
    zarr_format : {2, 3}
        Zarr format version.

    Raises
    ------
    InputError
        Unknown extension, data not 3-D, bad spacing or origin, a dataset for
        NRRD/TIFF, a non-zero origin for TIFF, or a dtype N5 cannot store.
    """
    path = os.fspath(path)
    kind = format_of(path)
    array = np.asarray(array)
    _check_3d(path, array.shape)
    spacing = check_spacing(spacing, path, "write_volume's argument")
    origin = check_origin(np.zeros(3) if origin is None else origin, path,
                          "write_volume's argument")
    if kind == "tiff" and np.any(origin != 0):
        raise InputError(path, f"TIFF cannot store the origin {origin.tolist()} µm.",
                         "write the volume as NRRD, Zarr, N5 or HDF5 to keep its origin")
    if kind in ("nrrd", "tiff"):
        no_dataset(path, dataset, kind.upper())
    chunks = tuple(min(int(c), n) for c, n in zip(chunks or _DEFAULT_CHUNKS, array.shape))
    if kind == "nrrd":  # handles its own atomic rename (.nhdr writes two files)
        return nrrd_format.write_file(path, array, spacing, origin)
    with atomic_path(path) as tmp:
        if kind == "zarr":
            zarr_store.write_dataset(tmp, array, spacing, origin, dataset, chunks, zarr_format)
        elif kind == "n5":
            n5.write_dataset(tmp, dataset.strip("/") if dataset else None, array, spacing,
                             origin, chunks)
        elif kind == "hdf5":
            hdf5.write_dataset(tmp, array, spacing, origin, dataset, chunks)
        else:
            tiff.write_file(tmp, array, spacing)
