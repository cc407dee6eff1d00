"""Voxel spacing and origin found in metadata, the units they are written in, OME-Zarr axes.

Readers of the attribute conventions shared by several formats: a plain
'spacing' (z, y, x), 'pixelResolution'/'resolution' (x, y, z, N5 and n5-viewer),
OME-Zarr 'multiscales' and group resolution times 'downsamplingFactors'. Each
reader returns ``(value, description)`` or None; :func:`check_spacing` turns a
value into the float64 (z, y, x) µm array a :class:`~snakestream.io.volumes.Volume`
carries, or raises one :class:`~snakestream.errors.InputError` line.
:func:`hierarchy_origin` and :func:`check_origin` do the same for the origin (the
physical position of voxel 0's centre): attributes 'origin' or 'offset' (z, y, x,
µm), or the OME-Zarr 'translation' of the array's level. Every OME
``coordinateTransformations`` list (NGFF 0.4 and 0.5) is read by
:func:`ome_scale_translation`.
:func:`hierarchy_axes` reads an OME-Zarr image's ``multiscales[].axes`` and
``omero.channels[].label`` (NGFF 0.4 attributes, or 0.5's under ``"ome"``).
"""

import numpy as np

from snakestream.errors import InputError

__all__ = ["ORIGIN_FIX", "SPACING_FIX", "as_floats", "check_origin", "check_spacing",
           "hierarchy_axes", "hierarchy_origin", "hierarchy_spacing", "named_axes",
           "ome_levels", "ome_scale_translation", "um_per_unit"]

SPACING_FIX = "put `spacing: [z, y, x]` (µm) for this volume in the config"
ORIGIN_FIX = "put `origin: [z, y, x]` (µm) for this volume in the config"

# Length units found in metadata, as µm per unit. ImageJ writes "micron" or "\u00B5m".
_UM_PER_UNIT = {
    **dict.fromkeys(["um", "µm", "μm", "\\u00b5m", "micron", "microns",
                     "micrometer", "micrometers", "micrometre", "micrometres"], 1.0),
    **dict.fromkeys(["nm", "nanometer", "nanometers", "nanometre", "nanometres"], 1e-3),
    **dict.fromkeys(["mm", "millimeter", "millimeters", "millimetre", "millimetres"], 1e3),
}


def um_per_unit(unit, default=1.0):
    """µm per `unit` (a metadata unit string); `default` when `unit` is empty.

    Returns None for a unit that is not a known length unit (e.g. "pixel").
    """
    if unit is None or str(unit).strip() == "":
        return default
    return _UM_PER_UNIT.get(str(unit).strip().lower())


def as_floats(value):
    """`value` as a 1-D float64 array, or unchanged if it is not numeric."""
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return value


def _finite_triple(value):
    """``value`` as a float64 array of shape (3,) if it is 3 finite numbers, else None."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (3,) and np.all(np.isfinite(array)) else None


def check_spacing(value, where, source):
    """Validate a spacing and return it as a float64 array (z, y, x, µm).

    Parameters
    ----------
    value : sequence of float
        Candidate spacing, z, y, x order, µm.
    where : str
        File the spacing belongs to (for the error message).
    source : str
        Where the value came from, e.g. "the config" or "attribute 'spacing'".

    Returns
    -------
    numpy.ndarray
        Shape (3,), float64, (z, y, x) in µm.

    Raises
    ------
    InputError
        `value` is not 3 positive finite numbers.
    """
    spacing = _finite_triple(value)
    if spacing is None or np.any(spacing <= 0):
        raise InputError(
            where, f"spacing {value!r} from {source} is not 3 positive finite "
            "numbers (z, y, x in µm).", SPACING_FIX)
    return spacing


def check_origin(value, where, source):
    """Validate an origin and return it as a float64 array (z, y, x, µm).

    Parameters
    ----------
    value : sequence of float
        Candidate origin: physical position of voxel 0's centre, z, y, x, µm.
    where, source : str
        As for :func:`check_spacing`.

    Returns
    -------
    numpy.ndarray
        Shape (3,), float64, (z, y, x) in µm.

    Raises
    ------
    InputError
        `value` is not 3 finite numbers.
    """
    origin = _finite_triple(value)
    if origin is None:
        raise InputError(
            where, f"origin {value!r} from {source} is not 3 finite numbers "
            "(z, y, x in µm).", ORIGIN_FIX)
    return origin


def _xyz_resolution(value):
    """Spacing (z, y, x) from an x, y, z list or {"dimensions": [x,y,z], "unit": u}."""
    unit = None
    if isinstance(value, dict):
        value, unit = value.get("dimensions"), value.get("unit")
    factor = um_per_unit(unit)
    values = as_floats(value)
    if factor is None or not isinstance(values, np.ndarray):
        return value
    return values[::-1] * factor


def _attrs_spacing(attrs):
    """Spacing from 'spacing' (z,y,x), 'pixelResolution' or 'resolution' (x,y,z)."""
    if "spacing" in attrs:
        return as_floats(attrs["spacing"]), "attribute 'spacing'"
    for key in ("pixelResolution", "resolution"):
        if key in attrs:
            return _xyz_resolution(attrs[key]), f"attribute {key!r}"
    return None


def ome_scale_translation(transforms):
    """The 'scale' and 'translation' of an NGFF ``coordinateTransformations`` list.

    The one reader of NGFF 0.4 / 0.5 coordinate transformations (a dataset's or a
    multiscale's): a physical position is ``index * scale + translation``, one value
    per stored axis, in the axes' units.

    Parameters
    ----------
    transforms : list of dict or None
        The ``coordinateTransformations`` entry.

    Returns
    -------
    scale, translation : numpy.ndarray or None
        As listed (float64, one per axis; a non-numeric value is returned as found);
        None for a missing scale; a missing translation is zeros shaped like the
        scale (None when the scale is missing too).
    """
    found = {}
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") in ("scale", "translation"):
            found.setdefault(t["type"], as_floats(t.get(t["type"])))
    scale, shift = found.get("scale"), found.get("translation")
    if shift is None and isinstance(scale, np.ndarray):
        shift = np.zeros(len(scale))
    return scale, shift


def ome_levels(attrs, relpath):
    """The levels of the OME-Zarr multiscale image that holds dataset `relpath`.

    Parameters
    ----------
    attrs : dict
        Attributes of the group that holds the 'multiscales' metadata.
    relpath : str
        Path of one of its datasets, relative to the group.

    Returns
    -------
    list of (str, numpy.ndarray, numpy.ndarray) or None
        Each level's dataset path (relative to the group), its 'scale' and its
        'translation' (0 where none is given) over the last 3 axes (z, y, x), in
        the metadata's units, in the metadata's order; None when no multiscale
        image lists `relpath` or a level has no 3 numeric scales.
    """
    for ms in _ome_attrs(attrs).get("multiscales") or []:
        datasets = [ds for ds in ms.get("datasets", []) if isinstance(ds, dict)]
        if relpath not in [str(ds.get("path", "")).strip("/") for ds in datasets]:
            continue
        levels = []
        for ds in datasets:
            scale, shift = ome_scale_translation(ds.get("coordinateTransformations"))
            if not isinstance(scale, np.ndarray) or len(scale) < 3:
                return None
            shift = shift[-3:] if isinstance(shift, np.ndarray) and len(shift) >= 3 else np.zeros(3)
            levels.append((str(ds.get("path", "")).strip("/"), scale[-3:], shift))
        return levels
    return None


def _ome_units(axes):
    """µm per unit of the last 3 OME axes (1 where the unit is missing or unknown)."""
    if not axes or not all(isinstance(a, dict) for a in axes[-3:]):
        return np.ones(3)
    return np.array([um_per_unit(a.get("unit")) or 1.0 for a in axes[-3:]])


def _ome_attrs(attrs):
    """A group's OME-Zarr metadata: ``attrs["ome"]`` (NGFF 0.5, Zarr v3) or `attrs` (0.4)."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) and "multiscales" in ome else attrs


def _ome_entry(attrs, relpath):
    """(multiscale, dataset entry) of the 'multiscales' in a group's `attrs` naming
    `relpath`, or None."""
    for ms in _ome_attrs(attrs).get("multiscales") or []:
        for ds in ms.get("datasets", []):
            if isinstance(ds, dict) and str(ds.get("path", "")).strip("/") == relpath:
                return ms, ds
    return None


def _ome_spacing(attrs, relpath):
    """Spacing of dataset `relpath` from OME-Zarr 'multiscales' in a group's `attrs`."""
    found = _ome_entry(attrs, relpath)
    if found is None:
        return None
    ms, ds = found
    scale, _ = ome_scale_translation(ds.get("coordinateTransformations"))
    if scale is None:
        return None
    overall, _ = ome_scale_translation(ms.get("coordinateTransformations"))
    if isinstance(scale, np.ndarray) and len(scale) >= 3:
        if isinstance(overall, np.ndarray) and overall.shape == scale.shape:
            scale = scale * overall
        scale = scale[-3:] * _ome_units(ms.get("axes"))
    return scale, "OME-Zarr 'multiscales'"


def _ome_origin(attrs, relpath):
    """Origin of dataset `relpath` from OME-Zarr 'multiscales' in a group's `attrs`.

    The dataset's translation, then the multiscale's own scale and translation
    (NGFF applies a dataset's transformations first), in µm by the axes' units.
    """
    found = _ome_entry(attrs, relpath)
    if found is None:
        return None
    ms, ds = found
    scale, shift = ome_scale_translation(ds.get("coordinateTransformations"))
    if not (isinstance(shift, np.ndarray) and len(shift) >= 3):
        return None
    overall, overall_shift = ome_scale_translation(ms.get("coordinateTransformations"))
    if isinstance(overall, np.ndarray) and overall.shape == shift.shape:
        shift = shift * overall
    if isinstance(overall_shift, np.ndarray) and overall_shift.shape == shift.shape:
        shift = shift + overall_shift
    return shift[-3:] * _ome_units(ms.get("axes")), "OME-Zarr 'translation'"


def _attrs_origin(attrs):
    """Origin from attribute 'origin' or 'offset' (z, y, x, µm)."""
    for key in ("origin", "offset"):
        if key in attrs:
            return as_floats(attrs[key]), f"attribute {key!r}"
    return None


def hierarchy_origin(array_attrs, ancestors):
    """Origin (voxel 0's centre, µm) of an array in a Zarr/N5 hierarchy.

    The array's own attribute 'origin' or 'offset' (z, y, x, µm) wins; else the
    nearest group whose OME 'multiscales' names the array gives the 'translation'
    of that level (:func:`_ome_origin`); else a group's 'origin'/'offset'.

    Parameters
    ----------
    array_attrs, ancestors
        As for :func:`hierarchy_spacing`.

    Returns
    -------
    tuple (value, str) or None
        The origin as found (meant as z, y, x µm; check it with
        :func:`check_origin`) and where it came from; None if no metadata gives it.
    """
    found = _attrs_origin(array_attrs)
    if found is not None:
        return found
    for attrs, relpath in ancestors:
        found = _ome_origin(attrs, relpath) or _attrs_origin(attrs)
        if found is not None:
            return found
    return None


# NGFF 0.3 lists axes as names; 0.4 and 0.5 as {name, type}. Types of the 0.3 names:
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _axis(entry):
    """(name, type) of one NGFF axis entry (a name, or {"name", "type"})."""
    if isinstance(entry, dict):
        name = str(entry.get("name", ""))
        return name, entry.get("type") or _AXIS_TYPES.get(name.lower())
    return str(entry), _AXIS_TYPES.get(str(entry).lower())


def named_axes(names):
    """Axes ((name, type) per dimension) from dimension names such as Zarr v3's
    ``dimension_names`` or xarray's ``_ARRAY_DIMENSIONS``, when every name is one of
    t, c, z, y, x (any case); else None."""
    if not isinstance(names, (list, tuple)) or not names:
        return None
    if not all(isinstance(n, str) and n.lower() in _AXIS_TYPES for n in names):
        return None
    return tuple(_axis(n) for n in names)


def _channel_labels(attrs):
    """OME channel labels (``omero.channels[].label``) of a group's `attrs`, or None."""
    omero = _ome_attrs(attrs).get("omero") or attrs.get("omero") or {}
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list):
        return None
    return tuple(str(c.get("label", "")) if isinstance(c, dict) else "" for c in channels)


def hierarchy_axes(ancestors):
    """Axes of an array in an OME-Zarr hierarchy, and the image's channel labels.

    Parameters
    ----------
    ancestors : list of (dict, str)
        Attributes of each enclosing group, nearest first, with the array's path
        relative to that group (as for :func:`hierarchy_spacing`).

    Returns
    -------
    tuple or None
        ``(axes, labels)``: `axes` a tuple of (name, type) per array dimension, type
        one of "time", "channel", "space" (or another NGFF type, or None when unknown),
        from the group's ``multiscales[].axes``; `labels` the ``omero.channels[].label``
        strings (None without 'omero'). None when no group's 'multiscales' names the
        array.
    """
    for attrs, relpath in ancestors:
        found = _ome_entry(attrs, relpath)
        if found is not None and isinstance(found[0].get("axes"), list):
            return tuple(_axis(a) for a in found[0]["axes"]), _channel_labels(attrs)
    return None


def hierarchy_spacing(array_attrs, ancestors):
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

    Returns
    -------
    tuple (value, str) or None
        The spacing value as found (meant as z, y, x µm; check it with
        :func:`check_spacing`) and where it came from; None if no metadata gives it.
    """
    found = _attrs_spacing(array_attrs)
    if found is not None:
        return found
    factors = as_floats(array_attrs.get("downsamplingFactors", [1, 1, 1]))
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
