"""Carry point coordinates (FISH spots, landmarks) between fixed and moving space.

Forward (fixed -> moving) is ``y = A @ (x + d(x))``. Backward (moving -> fixed)
solves that equation for x by fixed-point iteration ``x <- A^-1 y - d(x)``,
which converges when the field's gradient is below 1 (no folds), so no
separate inverse field is needed for points.
"""

import numpy as np
import pandas as pd

from snakestream.errors import InputError
from snakestream.fields.transform import apply_affine, sample_zarr_field

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


def forward(points, affine, field=None, field_spacing=None):
    """Fixed -> moving (µm): A @ (x + d(x)), reading only the field around each point."""
    points = np.asarray(points, float)
    if field is not None:
        points = points + sample_zarr_field(field, field_spacing, points)
    return apply_affine(affine, points)


def backward(points, affine, field=None, field_spacing=None, iterations=30, tol=1e-5):
    """Moving -> fixed (µm): the x with A @ (x + d(x)) = y, by fixed-point iteration.

    Returns ``(x, residual)`` where residual is |forward(x) - y| per point (µm).
    """
    points = np.asarray(points, float)
    start = apply_affine(np.linalg.inv(affine), points)
    x = start.copy()
    if field is not None:
        for _ in range(iterations):
            new = start - sample_zarr_field(field, field_spacing, x)
            done = np.abs(new - x).max() < tol
            x = new
            if done:
                break
    residual = np.linalg.norm(forward(x, affine, field, field_spacing) - points, axis=1)
    return x, residual


def write_points(path, table, points, units="um", spacing=None):
    """Write the table with z,y,x replaced by the transformed points (same units as read)."""
    out = table.copy()
    values = points / np.asarray(spacing, float) if units == "voxel" else points
    out[AXES] = values
    out.to_csv(path, index=False)
