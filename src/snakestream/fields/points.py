"""Point tables (FISH spots, landmarks) read and written for carrying between spaces.

The points themselves are mapped by :func:`snakestream.fields.transform.transform_points`
(fixed -> moving) and :func:`snakestream.fields.transform.invert_points` (moving -> fixed).
"""

import numpy as np
import pandas as pd

from snakestream.errors import InputError

AXES = ["z", "y", "x"]


def voxels_to_um(points, spacing, origin=None, *, where="points"):
    """Voxel coordinates (z, y, x, of an image's grid) as physical µm.

    Parameters
    ----------
    points : (N, 3) array
        Voxel coordinates, z, y, x (voxel centres at integers).
    spacing : sequence of 3 float
        The image's voxel size, µm, z, y, x.
    origin : sequence of 3 float, optional
        Physical position (µm, z, y, x) of the image's voxel 0 (its ``origin``
        once volumes carry one); 0 by default.
    where : str
        The file the points came from, for the message.

    Returns
    -------
    (N, 3) float64 µm, z, y, x.
    """
    if spacing is None:
        raise InputError(where, "voxel coordinates need the image spacing.",
                         "give the points in µm, or the image they belong to.")
    origin = np.zeros(3) if origin is None else np.asarray(origin, float)
    return np.asarray(points, float) * np.asarray(spacing, float) + origin


def read_points(path, units="um", spacing=None, *, origin=None):
    """Read a point table: a CSV with z, y, x columns (other columns kept) or an (N, 3) .npy.

    Parameters
    ----------
    path : str
    units : {'um', 'voxel'}
        Units of the coordinates in the file.
    spacing : sequence of 3 float, optional
        Voxel size (µm, z, y, x) of the image the points belong to; needed for voxels.
    origin : sequence of 3 float, optional
        That image's voxel 0 position (µm, z, y, x; default 0): voxel ``i`` is the
        physical point ``origin + i * spacing``. µm coordinates are taken as physical
        points already (the origin included).

    Returns
    -------
    points : (N, 3) float64
        Physical points, µm, z, y, x.
    table : DataFrame
        The table as read.
    """
    if str(path).endswith(".npy"):
        pts = np.load(path)
        table = pd.DataFrame(pts, columns=AXES)
    else:
        table = pd.read_csv(path)
        missing = [a for a in AXES if a not in table.columns]
        if missing:
            raise InputError(path, f"point table lacks column(s) {missing}.",
                             "give columns named z, y, x (µm, or voxels with units: voxel).")
        pts = table[AXES].to_numpy(float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(path, f"points must be an (N, 3) z,y,x array, got {pts.shape}.")
    if units == "voxel":
        pts = voxels_to_um(pts, spacing, origin, where=path)
    return pts, table


def write_points(path, table, points, units="um", spacing=None, *, origin=None):
    """Write ``table`` as CSV with its z, y, x columns replaced by ``points``.

    Parameters
    ----------
    path : str
    table : DataFrame
        As returned by :func:`read_points`.
    points : (N, 3) array
        New positions, µm, z, y, x.
    units, spacing, origin
        As in :func:`read_points`: voxel output is ``(points - origin) / spacing`` (of the
        target image).
    """
    out = table.copy()
    if units == "voxel":
        shift = 0.0 if origin is None else np.asarray(origin, float)
        values = (points - shift) / np.asarray(spacing, float)
    else:
        values = points
    out[AXES] = values
    out.to_csv(path, index=False)
