"""Which block covers a fixed-image voxel or physical point."""

import numpy as np

from snakestream.grid.blocks import table_bounds
from snakestream.grid.layout import touching


def blocks_at(table, voxel):
    """Rows of the block table whose region contains ``voxel`` (z,y,x), core owner first.

    Exactly one block's core contains a voxel inside the image; neighbours whose
    overlap reaches it follow.
    """
    v = np.asarray(voxel, int)
    inside = touching(*table_bounds(table), v, v + 1)
    in_core = touching(*table_bounds(table, core=True), v, v + 1)
    hits = table[inside].assign(core=in_core[inside])
    return hits.sort_values("core", ascending=False)


def voxel_of(point_um, spacing, *, origin=None):
    """Nearest fixed voxel (z,y,x) of a physical point in µm, on a grid whose voxel 0 sits
    at ``origin`` (µm, z,y,x; default 0)."""
    point = np.asarray(point_um, float) - (0.0 if origin is None else np.asarray(origin, float))
    return np.round(point / np.asarray(spacing, float)).astype(int)
