"""Which block covers a fixed-image voxel or physical point (`snakestream which-block`)."""

import numpy as np

from snakestream.grid.blocks import block_relpath, table_bounds
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


def which_block_lines(table, voxel, *, out, configfile):
    """What ``snakestream which-block`` prints for a fixed voxel (z,y,x).

    One tab-separated line per block whose region holds the voxel (core owner first):
    id, core/overlap, whether it is aligned, its block file; then the commands that
    re-run and inspect the core owner. Empty when the voxel is outside the image.

    Parameters
    ----------
    table : pandas.DataFrame
        The block table (:func:`snakestream.grid.blocks.read_table`).
    voxel : sequence of 3 int
        Fixed-image voxel, z, y, x.
    out : str
        The run's output folder (block file paths are shown under it).
    configfile : str
        The config file, as the user gave it (shown in the commands).
    """
    hits = blocks_at(table, voxel)
    if hits.empty:
        return []
    lines = [f"{row['id']}\t{'core' if row['core'] else 'overlap'}\t"
             f"aligned={bool(row['aligned'])}\t{out}/blocks/{block_relpath(row['id'])}"
             for _, row in hits.iterrows()]
    bid = hits.iloc[0]["id"]
    lines += [f"# re-run:  snakestream run {configfile} {out}/blocks/{block_relpath(bid)} "
              f"--forcerun align_block --cores 1",
              f"# inspect: snakestream run {configfile} {out}/debug/{bid} --cores 1"]
    return lines
