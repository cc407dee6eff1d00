"""One 3-D (z, y, x) volume out of a stored array with time and channel axes.

A stored array may have time and channel axes besides its three space axes (the
(t, c, z, y, x) of OME-Zarr writers, bigstream's (c, z, y, x) N5). Its axes come
from the file's metadata when it has some (OME-Zarr ``multiscales[].axes``, read by
:func:`~snakestream.io.metadata.hierarchy_axes`, or Zarr dimension names t, c, z, y, x,
:func:`~snakestream.io.metadata.named_axes`); otherwise from the number of
dimensions, the bigstream/Fiji convention (:func:`conventional_axes`):

==========  =====================
dimensions  axes
==========  =====================
3           (z, y, x)
4           (c, z, y, x)
5           (t, c, z, y, x)
==========  =====================

A volume entry's ``channel`` (an index, or an OME channel label from
``omero.channels[].label``) and ``timepoint`` (an index) pick one position on those
axes (:func:`select`); an axis of length 1 is picked without being asked. The result
is an index with an int for every picked axis and None for each space axis, which
:class:`~snakestream.io.volumes.Volume` fills with the region a read asks for
(:func:`full_index`).
"""

import numpy as np

from snakestream.errors import InputError

__all__ = ["KEYS", "NOT_3D_FIX", "conventional_axes", "full_index", "select", "spatial"]

SPACE = "space"
#: Config key of a volume entry -> the NGFF axis type it selects on.
KEYS = {"timepoint": "time", "channel": "channel"}
_NOUNS = {"time": ("time point", "time points"), "channel": ("channel", "channels")}
_CONVENTION = {
    3: (("z", SPACE), ("y", SPACE), ("x", SPACE)),
    4: (("c", "channel"), ("z", SPACE), ("y", SPACE), ("x", SPACE)),
    5: (("t", "time"), ("c", "channel"), ("z", SPACE), ("y", SPACE), ("x", SPACE)),
}
NOT_3D_FIX = "point `dataset` at a 3-D array or save one channel as a 3-D volume"


def conventional_axes(ndim):
    """Axes ((name, type) per dimension) of an array without axis metadata, or None.

    3-D is (z, y, x), 4-D (c, z, y, x) and 5-D (t, c, z, y, x) (bigstream's and Fiji's
    order); other dimension counts have no convention.
    """
    return _CONVENTION.get(int(ndim))


def spatial(values, axes):
    """The entries of `values` (one per axis) on the space axes, in order (z, y, x)."""
    return [v for v, (_, kind) in zip(values, axes) if kind == SPACE]


def _names(axes):
    return "(" + ", ".join(name for name, _ in axes) + ")"


def _check_axes(where, shape, axes):
    """InputError unless `axes` has one entry per dimension and exactly 3 space axes."""
    if axes is None or len(spatial(axes, axes)) != 3 or len(axes) != len(shape):
        found = "" if axes is None or len(axes) != len(shape) else f" with axes {_names(axes)}"
        raise InputError(where, f"data has shape {tuple(shape)} ({len(shape)}-D){found}; "
                         "a 3-D (z, y, x) volume is needed.", NOT_3D_FIX)


def _label_index(where, value, n, labels):
    """Index of channel label `value` among the OME `labels`."""
    if not labels:
        raise InputError(where, f"`channel: {value}` is a label, but the file has no OME "
                         "channel labels (omero.channels[].label).",
                         f"set `channel` to the channel's index (0-{n - 1})")
    if value not in labels:
        raise InputError(where, f"channel label {value!r} not found; the channels are: "
                         f"{', '.join(labels)}.", "set `channel` to one of those labels "
                         f"or to an index (0-{n - 1})")
    return labels.index(value)


def _position(where, key, value, n, labels):
    """The index `value` of config key `key` names on an axis of length `n`, checked."""
    if key == "channel" and isinstance(value, str):
        value = _label_index(where, value, n, labels)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(where, f"`{key}: {value!r}` is not an index.",
                         f"set `{key}` to an integer (0-{n - 1})")
    if not 0 <= value < n:
        noun = _NOUNS[KEYS[key]][1]
        raise InputError(where, f"`{key}: {value}` is outside the {n} {noun} (0-{n - 1}).",
                         f"set `{key}` to 0-{n - 1}")
    return int(value)


def _unselected(where, shape, axes, missing, labels):
    """InputError for axes longer than 1 that no key selects on."""
    parts, fixes = [], []
    for key, kind in KEYS.items():
        n = [size for size, (_, k) in zip(shape, axes) if k == kind]
        if kind in missing:
            parts.append(f"{n[0]} {_NOUNS[kind][1]}")
            named = f" or a label: {', '.join(labels)}" if key == "channel" and labels else ""
            fixes.append(f"`{key}` (0-{n[0] - 1}{named})")
    other = [name for (name, kind), size in zip(axes, shape)
             if kind not in KEYS.values() and kind != SPACE and size > 1]
    if other:
        raise InputError(where, f"data has axes {_names(axes)} of shape {tuple(shape)}; axis "
                         f"{', '.join(other)} is neither time, channel nor space.",
                         "save the volume to register as its own 3-D (or t, c, z, y, x) array")
    raise InputError(where, f"data has axes {_names(axes)} of shape {tuple(shape)}: "
                     f"{' and '.join(parts)}, and no selection.",
                     f"set {' and '.join(fixes)} for this volume in the config")


def select(where, shape, axes, *, channel=None, timepoint=None, labels=None):
    """The index picking one 3-D volume out of an array, from a volume entry's keys.

    Parameters
    ----------
    where : str
        The file (and dataset), for messages.
    shape : tuple of int
        The stored array's shape, one entry per axis.
    axes : tuple of (str, str) or None
        (name, type) per axis (:func:`conventional_axes` or the file's metadata); None
        when the dimension count has no convention.
    channel : int or str, optional
        Index on the channel axis, or one of `labels`.
    timepoint : int, optional
        Index on the time axis.
    labels : tuple of str, optional
        OME channel labels, in channel order.

    Returns
    -------
    tuple
        One entry per axis: the int index picked on a time or channel axis (0 on an
        axis of length 1), None on a space axis.

    Raises
    ------
    InputError
        Not 3 space axes; a key for an axis the data does not have; an index outside
        its axis or an unknown label; an axis longer than 1 that no key selects on.
    """
    _check_axes(where, shape, axes)
    given = {"channel": channel, "timepoint": timepoint}
    kinds = [kind for _, kind in axes]
    for key, value in given.items():
        if value is not None and KEYS[key] not in kinds:
            raise InputError(where, f"`{key}: {value}` given, but the data's axes "
                             f"{_names(axes)} have no {KEYS[key]} axis.",
                             f"remove `{key}` for this volume from the config")
    index, missing = [], set()
    for size, (_, kind) in zip(shape, axes):
        key = next((k for k, v in KEYS.items() if v == kind), None)
        if kind == SPACE:
            index.append(None)
        elif key is not None and given[key] is not None:
            index.append(_position(where, key, given[key], size, labels))
        elif size == 1:
            index.append(0)
        else:
            index.append(0)
            missing.add(kind)
    if missing or any(size > 1 and kind not in KEYS.values() and kind != SPACE
                      for size, kind in zip(shape, kinds)):
        _unselected(where, shape, axes, missing, labels)
    return tuple(index)


def full_index(selection, region):
    """The stored array's index reading (z, y, x) `region` at `selection`.

    Parameters
    ----------
    selection : tuple
        From :func:`select`: ints on picked axes, None on the 3 space axes.
    region : tuple of 3 slice
        (z, y, x) slices.

    Returns
    -------
    tuple
        `selection` with its Nones replaced by the slices of `region`, in order.
    """
    region = iter(region)
    return tuple(next(region) if s is None else s for s in selection)
