"""Point tables (FISH spots, landmarks) read and written for carrying between spaces.

The points themselves are mapped by :func:`snakestream.fields.transform.transform_points`
(fixed -> moving) and :func:`snakestream.fields.transform.invert_points` (moving -> fixed).
"""

import numpy as np
import pandas as pd

from snakestream.errors import InputError

AXES = ["z", "y", "x"]


def read_points(path, units="um", spacing=None):
    """(N,3) µm points and the table they came from (CSV with z,y,x columns, or .npy)."""
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
        if spacing is None:
            raise InputError(path, "voxel coordinates need the image spacing.")
        pts = pts * np.asarray(spacing, float)
    return pts, table


def write_points(path, table, points, units="um", spacing=None):
    """Write the table with z,y,x replaced by the transformed points (same units as read)."""
    out = table.copy()
    values = points / np.asarray(spacing, float) if units == "voxel" else points
    out[AXES] = values
    out.to_csv(path, index=False)
