"""Finding the volume inside a file: existence, which dataset, and what an opener reports.

The format modules (:mod:`~snakestream.io.zarr_store`, :mod:`~snakestream.io.n5`,
:mod:`~snakestream.io.hdf5`, :mod:`~snakestream.io.nrrd_format`,
:mod:`~snakestream.io.tiff`) share one contract:

- ``open_dataset(path, dataset)`` opens an existing file; `dataset` is the path
  inside a container (None: its root array or only array; must be None for
  single-volume formats). It returns an :class:`Opened`: the resolved dataset,
  shape and chunks (z, y, x), dtype, the spacing found in the metadata as
  ``(value, description)`` (value meant as z, y, x µm, checked later) or None,
  the origin (voxel 0's centre, z, y, x µm) found likewise or None (TIFF: always
  None), and ``reader(index)`` reading a region (one slice or int per stored axis). An
  array with time or channel axes reports its shape and chunks as stored, and, when
  its metadata names them, its ``axes`` ((name, type) per axis) and OME channel
  ``labels`` (:mod:`~snakestream.io.selection` picks the 3-D volume).
  :func:`~snakestream.io.volumes.open_volume` turns it into a
  :class:`~snakestream.io.volumes.Volume`.
- the writer takes `array` (z, y, x), `spacing` and `origin` (float64, z, y, x,
  µm, already checked) and writes a new file at the path it is given, which
  :func:`~snakestream.io.volumes.write_volume` makes atomic (NRRD does its own).
"""

import collections
import os

from snakestream.errors import InputError

__all__ = ["Opened", "ancestors", "label", "no_dataset", "pick_dataset", "require_exists"]

# What an opener found: dataset is the resolved path (None: root array); spacing
# is (value, description) from the file's metadata or None; reader(index) -> array;
# axes ((name, type) per axis) and channel labels from the metadata, or None;
# origin is (value, description) like spacing, or None.
Opened = collections.namedtuple("Opened",
                                "dataset shape dtype chunks spacing reader axes labels origin",
                                defaults=(None, None, None))


def require_exists(path):
    """Raise InputError if nothing exists at `path`."""
    if not os.path.exists(path):
        raise InputError(
            path, "file not found.",
            f"check the path in the config (relative paths start at {os.getcwd()})")


def label(path, dataset):
    """How messages name a volume: ``"path [dataset]"``, or the path alone."""
    return f"{path} [{dataset}]" if dataset else str(path)


def pick_dataset(where, dataset, is_array, list_arrays):
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


def no_dataset(path, dataset, kind):
    """Raise InputError if `dataset` is given for a `kind` file that holds one volume."""
    if dataset:
        raise InputError(path, f"dataset {dataset!r} given, but a {kind} file holds one volume.",
                         "remove `dataset` for this volume from the config")


def ancestors(name):
    """(group path, path relative to it) for each group above `name`, nearest first."""
    parts = name.split("/")
    return [("/".join(parts[:i]), "/".join(parts[i:])) for i in range(len(parts) - 1, -1, -1)]
