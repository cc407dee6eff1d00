"""Which block covers a fixed-image voxel or physical point."""

import numpy as np


def blocks_at(table, voxel):
    """Rows of the block table whose region contains ``voxel`` (z,y,x), core owner first.

    Exactly one block's core contains a voxel inside the image; neighbours whose
    overlap reaches it follow.
    """
    v = np.asarray(voxel, int)
    inside = np.ones(len(table), bool)
    in_core = np.ones(len(table), bool)
    for k, ax in enumerate("zyx"):
        inside &= (table[f"{ax}0"].to_numpy() <= v[k]) & (v[k] < table[f"{ax}1"].to_numpy())
        in_core &= (table[f"c{ax}0"].to_numpy() <= v[k]) & (v[k] < table[f"c{ax}1"].to_numpy())
    hits = table[inside].assign(core=in_core[inside])
    return hits.sort_values("core", ascending=False)


def voxel_of(point_um, spacing):
    """Nearest fixed voxel (z,y,x) of a physical point in µm."""
    return np.round(np.asarray(point_um, float) / np.asarray(spacing, float)).astype(int)
