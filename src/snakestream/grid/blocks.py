"""Block ids, block files, the block table on disk, and per-block numbers.

The block grid itself (cores, regions, overlap, which blocks are aligned) is
computed by :class:`snakestream.grid.layout.BlockGrid`; this module names its
blocks, stores its table as TSV and reads one row back cheaply (block jobs do),
and measures each core's mask foreground.
"""

import zlib

import numpy as np

COLUMNS = ["id", "iz", "iy", "ix", "z0", "z1", "y0", "y1", "x0", "x1",
           "cz0", "cz1", "cy0", "cy1", "cx0", "cx1", "foreground", "aligned", "reason"]


def block_id(iz, iy, ix):
    """Block id from its grid index, e.g. ``z0003_y0012_x0004``."""
    return f"z{iz:04d}_y{iy:04d}_x{ix:04d}"


def block_relpath(bid, ext="npz"):
    """Path of a block's file under ``blocks/``, sharded so no folder grows large."""
    z, y, _ = bid.split("_")
    return f"{z}/{y}/{bid}.{ext}"


def block_seed(bid):
    """Deterministic 31-bit seed for a block's random metric sampling."""
    return zlib.crc32(bid.encode()) & 0x7FFFFFFF


def region_slices(row, core=False):
    """Tuple of z,y,x slices of a table row's region (or core)."""
    p = "c" if core else ""
    return tuple(slice(int(row[f"{p}{a}0"]), int(row[f"{p}{a}1"])) for a in "zyx")


def table_bounds(table, core=False):
    """Regions (or cores) of a block table's rows as ``(lo, hi)`` arrays (N x 3, z,y,x)."""
    p = "c" if core else ""
    return (table[[f"{p}{a}0" for a in "zyx"]].to_numpy(),
            table[[f"{p}{a}1" for a in "zyx"]].to_numpy())


def below_threshold_qc(row):
    """QC record of a block the table does not align: 'skipped', with the table's reason."""
    return {"id": row["id"], "status": "skipped", "reason": row["reason"], "steps": []}


def nearest_voxel(index, spacing, other_spacing, n_other, *, offset=0.0):
    """Along one axis: the voxel of another grid nearest to each voxel ``index``.

    Voxel centres sit at index x spacing (µm) on this grid and at ``offset`` +
    index x ``other_spacing`` on the other (``offset`` 0: the grids share the
    origin, as a mask at another resolution does; a pyramid level's offset is
    :attr:`snakestream.io.pyramids.Level.offset`); the result is clipped to
    ``[0, n_other)`` (edges extended). The one rule for masks at another
    resolution: block selection and mask crops use it.
    """
    nearest = np.floor((np.asarray(index) * spacing - offset) / other_spacing + 0.5).astype(int)
    return np.clip(nearest, 0, n_other - 1)


def _axis_weights(n_fixed, fixed_spacing, n_mask, mask_spacing, block, offset):
    """(blocks x mask voxels) sparse counts along one axis.

    Entry [b, j]: fixed voxels of block ``b``'s core whose nearest mask voxel is ``j``.
    """
    from scipy import sparse

    i = np.arange(n_fixed)
    j = nearest_voxel(i, fixed_spacing, mask_spacing, n_mask, offset=offset)
    shape = (int(np.ceil(n_fixed / block)), int(n_mask))
    return sparse.csr_matrix((np.ones(n_fixed, np.float32), (i // block, j)), shape=shape)


def foreground_fractions(mask, shape, spacing, blocksize, slab_voxels=1 << 22, *,
                         offset=(0.0, 0.0, 0.0)):
    """Fraction of each block core (fixed voxels) whose nearest mask voxel is set.

    The mask is read once, in z slabs of about ``slab_voxels`` voxels (~4 M: ~30 MB of
    working memory), at its own resolution; memory stays bounded whatever its size. This
    runs at parse time in Snakemake's main process, whose peak memory every local job
    inherits in its accounting, so the slabs are kept small.

    Parameters
    ----------
    mask : snakestream.io.volumes volume
        Fixed-image mask (any resolution, same physical extent); > 0 is foreground.
    shape, spacing : fixed image shape (z,y,x) and spacing (µm, z,y,x).
    blocksize : sequence of 3 int
        Block core in fixed voxels.
    offset : sequence of 3 float
        Centre of the mask's voxel 0 from the fixed image's voxel 0, µm (z,y,x);
        non-zero for a coarse pyramid level of a mask (:func:`nearest_voxel`).

    Returns
    -------
    (gz, gy, gx) float array of fractions in [0, 1], the block grid's shape.
    """
    w = [_axis_weights(shape[a], spacing[a], mask.shape[a], mask.spacing[a], blocksize[a],
                       float(offset[a])) for a in range(3)]
    grid = tuple(m.shape[0] for m in w)
    total = np.zeros(grid)
    _, ny, nx = mask.shape
    step = max(1, int(slab_voxels // max(ny * nx, 1)))
    for a in range(0, mask.shape[0], step):
        b = min(a + step, mask.shape[0])
        m = (mask.read((slice(a, b), slice(0, ny), slice(0, nx))) > 0).astype(np.float32)
        t = (w[2] @ m.reshape(-1, nx).T).reshape(grid[2], b - a, ny)     # (gx, s, ny)
        t = (w[1] @ t.transpose(2, 1, 0).reshape(ny, -1))                 # (gy, s*gx)
        t = t.reshape(grid[1], b - a, grid[2]).transpose(1, 0, 2)        # (s, gy, gx)
        total += (w[0][:, a:b] @ t.reshape(b - a, -1)).reshape(grid)
    cores = [np.asarray(m.sum(axis=1)).ravel() for m in w]  # core length per block
    return total / (cores[0][:, None, None] * cores[1][None, :, None] * cores[2][None, None, :])


def read_table(path):
    """Read a block table written by :func:`write_table`."""
    import pandas as pd  # imported here: block jobs read one row without it

    return pd.read_csv(path, sep="\t", keep_default_na=False,
                       dtype={"id": str, "reason": str})


def read_row(path, bid):
    """One row of a block table as a dict (ints, float foreground, bool aligned).

    Uses the csv module, not pandas: a block job reads one row, and importing pandas
    would cost it ~0.2 s. Raises KeyError if ``bid`` is not in the table.
    """
    import csv

    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["id"] == bid:
                out = {k: int(v) for k, v in row.items() if k not in ("id", "foreground",
                                                                    "aligned", "reason")}
                return {**out, "id": bid, "foreground": float(row["foreground"]),
                        "aligned": row["aligned"] == "True", "reason": row["reason"]}
    raise KeyError(bid)


def write_table(table, path):
    """Write the block table as TSV (caller handles atomicity)."""
    table.to_csv(path, sep="\t", index=False)


def ramp(start, stop, positions, ovl):
    """1-D linear-blending weight of a block at fixed-voxel ``positions``.

    The block's unclipped region is ``[start, stop)``; the weight rises linearly
    over ``ovl`` voxels from each face (strictly positive, 1 in the core).
    """
    i = np.asarray(positions, dtype=np.float64)
    if ovl <= 0:
        return np.ones_like(i)
    dist = np.minimum(i - start, stop - 1 - i)
    return np.clip((dist + 0.5) / ovl, 1.0 / (2 * ovl), 1.0)


def n_slabs(shape, chunks):
    """Number of one-chunk-thick z slabs covering a grid of ``shape`` (z,y,x) in ``chunks``."""
    return int(np.ceil(shape[0] / chunks[0]))
