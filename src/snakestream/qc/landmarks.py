"""Landmark pairs: read from BigWarp, a plain CSV or the demo's truth.npz; TRE tables written.

Three files give corresponding fixed and moving points (the ``landmarks`` config key,
or the older ``truth`` key for an .npz):

BigWarp's ``landmarks.csv``
    No header; one row per landmark: ``name, active, moving x, moving y, moving z,
    fixed x, fixed y, fixed z`` in physical units (BigWarp's "moving" image is the one it
    warps, its "target" our fixed image; ``LandmarkTableModel.save``). Rows whose
    ``active`` is false are left out. Newer BigWarp builds may add an integer id as
    the third column (9 columns); it is skipped.
Plain CSV with a header
    Columns ``fixed_z, fixed_y, fixed_x, moving_z, moving_y, moving_x`` (any order,
    other columns kept out; optional ``name`` and ``active``). Coordinates are in
    ``units`` (the ``landmarks_units`` key: ``um`` or ``voxels``); a column suffix
    ``_um`` or ``_vox`` (``fixed_z_vox``) gives the unit of each image's columns instead.
    Voxel coordinates are converted with each image's spacing (and origin).
``.npz``
    ``landmarks_fixed`` and ``landmarks_moving`` (µm, z, y, x), as the demo writes.

Every point handed out is physical µm, z, y, x (BigWarp's x, y, z reversed).
"""

import csv
import os
from dataclasses import dataclass

import numpy as np

from snakestream.errors import InputError
from snakestream.fields.points import voxels_to_um
from snakestream.qc.metrics import stage_errors, summary

UNITS = ("um", "voxels")
_SUFFIXES = {"": None, "_um": "um", "_vox": "voxels", "_voxels": "voxels", "_px": "voxels"}
_FIX = "give columns fixed_z, fixed_y, fixed_x, moving_z, moving_y, moving_x, or BigWarp's " \
       "landmarks.csv (no header: name, active, moving x y z, fixed x y z)"
STAGE_COLUMNS = ["stage", "n", "median_um", "p95_um", "mean_um", "max_um"]


@dataclass
class Landmarks:
    """Corresponding points of the fixed and moving images.

    Attributes
    ----------
    names : list of str
        One per landmark (BigWarp's names, a ``name`` column, or ``0, 1, ...``).
    fixed, moving : (N, 3) float64
        Physical points, µm, z, y, x.
    """

    names: list
    fixed: np.ndarray
    moving: np.ndarray


@dataclass
class Frame:
    """An image's voxel grid, for voxel coordinates: spacing (µm, z, y, x) and origin.

    ``origin`` is the physical position (µm, z, y, x) of voxel 0; 0 until volumes
    carry one (:func:`frame_of` reads ``Volume.origin`` when there is one).
    """

    spacing: np.ndarray
    origin: np.ndarray = None


def frame_of(volume):
    """The :class:`Frame` of an opened volume (its spacing, and ``origin`` if it has one)."""
    origin = getattr(volume, "origin", None)  # the hook for Volume.origin
    return Frame(np.asarray(volume.spacing, float),
                 None if origin is None else np.asarray(origin, float))


def _is_bigwarp(first_row):
    """Whether a first CSV row is BigWarp data (no header): 'name, true|false, numbers'."""
    return len(first_row) in (8, 9) and first_row[1].strip().lower() in ("true", "false")


def _floats(cells, path, line):
    try:
        return [float(c) for c in cells]
    except ValueError:
        raise InputError(path, f"line {line}: {cells} are not all numbers.", _FIX) from None


def read_bigwarp(path):
    """BigWarp's landmarks.csv as :class:`Landmarks` (active rows only, µm z, y, x)."""
    names, fixed, moving = [], [], []
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.reader(fh), 1):
            if not row:
                continue
            if not _is_bigwarp(row):
                raise InputError(path, f"line {line} has {len(row)} columns; BigWarp rows "
                                 "have 8 (name, active, moving x y z, fixed x y z).", _FIX)
            if row[1].strip().lower() != "true":
                continue
            coords = _floats(row[-6:], path, line)
            names.append(row[0])
            moving.append(coords[2::-1])  # x, y, z -> z, y, x
            fixed.append(coords[:2:-1])
    return Landmarks(names, np.reshape(fixed, (-1, 3)), np.reshape(moving, (-1, 3)))


def _columns(header, image, path):
    """The z, y, x column names of ``image`` ('fixed'/'moving') and their unit (or None)."""
    for suffix, unit in _SUFFIXES.items():
        names = [f"{image}_{ax}{suffix}" for ax in "zyx"]
        if all(n in header for n in names):
            return names, unit
    raise InputError(path, f"no {image}_z, {image}_y, {image}_x columns in the header "
                     f"{list(header)}.", _FIX)


def read_plain(path, *, units="um", fixed=None, moving=None):
    """A plain landmark CSV (header with fixed_* and moving_* columns) as :class:`Landmarks`.

    Parameters
    ----------
    path : str
    units : {'um', 'voxels'}
        Unit of columns without a unit suffix.
    fixed, moving : Frame, optional
        The images' grids; needed for voxel coordinates.
    """
    import pandas as pd

    if units not in UNITS:
        raise InputError(path, f"landmarks_units {units!r} is not one of {', '.join(UNITS)}.",
                         "set landmarks_units: um or voxels.")
    table = pd.read_csv(path)
    if "active" in table.columns:
        table = table[table["active"].astype(str).str.strip().str.lower()
                      .isin(["true", "1", "yes"])]
    points = {}
    for image, frame in (("fixed", fixed), ("moving", moving)):
        names, unit = _columns(table.columns, image, path)
        values = table[names].to_numpy(float)
        if (unit or units) == "voxels":
            if frame is None:
                raise InputError(path, f"{image} coordinates are voxels but the {image} "
                                 "image's spacing is not known here.",
                                 "give µm, or read the landmarks through the workflow.")
            values = voxels_to_um(values, frame.spacing, frame.origin, where=path)
        points[image] = values
    names = (table["name"].astype(str).tolist() if "name" in table.columns
             else [str(i) for i in table.index])
    return Landmarks(names, points["fixed"], points["moving"])


def read_npz(path):
    """A truth .npz (``landmarks_fixed``, ``landmarks_moving``, µm z, y, x) as :class:`Landmarks`."""
    try:
        with np.load(path) as data:
            fixed, moving = data["landmarks_fixed"], data["landmarks_moving"]
    except (OSError, KeyError, ValueError) as err:
        raise InputError(path, f"not an .npz with landmarks_fixed and landmarks_moving ({err}).",
                         "point truth (or landmarks) at such a file, or at a landmarks CSV.")
    return Landmarks([str(i) for i in range(len(fixed))], np.asarray(fixed, float),
                     np.asarray(moving, float))


def read_landmarks(path, *, units="um", fixed=None, moving=None):
    """Read landmark pairs from BigWarp's CSV, a plain CSV or an .npz (by content and extension).

    Parameters
    ----------
    path : str
    units : {'um', 'voxels'}
        Units of a plain CSV's columns without a unit suffix (BigWarp and .npz are µm).
    fixed, moving : Frame, optional
        The images' voxel grids, for voxel coordinates.

    Returns
    -------
    Landmarks
        Physical points, µm, z, y, x; ``fixed[i]`` corresponds to ``moving[i]``.

    Raises
    ------
    InputError
        A missing file, a table in neither format, no active landmark.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "landmarks file not found.",
                         "check the landmarks (or truth) key of the config.")
    if path.endswith(".npz"):
        found = read_npz(path)
    else:
        with open(path, newline="") as fh:
            first = next(csv.reader(fh), [])
        found = (read_bigwarp(path) if _is_bigwarp(first)
                 else read_plain(path, units=units, fixed=fixed, moving=moving))
    if len(found.fixed) == 0:
        raise InputError(path, "holds no active landmark.",
                         "mark some landmarks active, or remove the landmarks key.")
    return found


def write_bigwarp(path, landmarks):
    """Write :class:`Landmarks` as BigWarp's landmarks.csv (all active, x, y, z, µm)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
        for name, f, m in zip(landmarks.names, landmarks.fixed, landmarks.moving):
            writer.writerow([name, "true", *map(repr, np.asarray(m, float)[::-1].tolist()),
                             *map(repr, np.asarray(f, float)[::-1].tolist())])


def tre_tables(landmarks, affine, field=None, field_spacing=None, *, field_origin=None):
    """The stage table and the per-landmark table of the TRE of a run.

    Parameters
    ----------
    landmarks : Landmarks
    affine : (4, 4) array
        Global fixed -> moving affine, µm.
    field : (Z, Y, X, 3) array, optional
        The stitched displacement field (µm); None without a block stage.
    field_spacing : sequence of 3 float
        Its grid spacing, µm.
    field_origin : sequence of 3 float, optional
        Its voxel 0's position, µm (the fixed origin); 0 by default.

    Returns
    -------
    stages : DataFrame
        :data:`STAGE_COLUMNS`, one row per stage (before, global, blocks).
    points : DataFrame
        One row per landmark: name, fixed and moving µm (z, y, x), and
        ``error_<stage>_um`` per stage.
    """
    import pandas as pd

    errors = stage_errors(landmarks.fixed, landmarks.moving, affine, field, field_spacing,
                          field_origin=field_origin)
    rows = []
    for stage, d in errors.items():
        s = summary(d)
        rows.append([stage, s["n"], s["median"], s["p95"], s["mean"], s["max"]])
    points = pd.DataFrame({"name": landmarks.names})
    for image in ("fixed", "moving"):
        for k, ax in enumerate("zyx"):
            points[f"{image}_{ax}_um"] = getattr(landmarks, image)[:, k]
    for stage, d in errors.items():
        points[f"error_{stage}_um"] = d
    return pd.DataFrame(rows, columns=STAGE_COLUMNS), points


def read_stage_table(path):
    """``qc/landmarks.tsv`` as ``{stage: {"n", "median", "p95", "mean", "max"}}`` (µm)."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    return {row.stage: {"n": int(row.n), "median": row.median_um, "p95": row.p95_um,
                        "mean": row.mean_um, "max": row.max_um} for row in table.itertuples()}
