"""Gather: blend per-block transforms into one displacement field, chunk by chunk.

Each block's displacement ``T_block(x) - x`` is evaluated on the part of its
region that falls in the output chunk, multiplied by a linear-blending weight
(a ramp across the overlap, flat in the core, strictly positive) and summed;
the sum is divided by the summed weight. A uniform motion therefore stitches
to itself exactly, and neither volume edges nor skipped neighbours need a
special case: where no aligned block reaches, the displacement is 0 (the
global affine alone). Block transforms map fixed local points (voxel 0 of the
fixed volume at 0 µm, :mod:`snakestream.register.block_stage`) and the
displacement of a transform does not change when both its frames move together,
so the field is evaluated on the local grid; its values hold on the fixed grid at
the fixed origin (deform.zarr's ``origin``).
"""

from functools import lru_cache

import numpy as np

from snakestream.fields.blockfile import block_transform, load_block
from snakestream.fields.jacobian import jacobian_det, jacobian_stats, merge_jacobian_stats
from snakestream.fields.transform import displacement_on_grid
from snakestream.grid.blocks import ramp
from snakestream.grid.layout import field_box, rows_touching
from snakestream.io.chunks import for_each_chunk, slab_bounds, write_unit


def block_weight(row, lo, hi, ovl, step=(1, 1, 1)):
    """Blending weight of a block over field voxels ``[lo, hi)`` (z,y,x), float64.

    Field voxel ``c`` sits on fixed voxel ``c * step`` (``step`` > 1 for a coarse field).
    """
    w = None
    for k, ax in enumerate("zyx"):
        start, stop = row[f"c{ax}0"] - ovl[k], row[f"c{ax}1"] + ovl[k]
        r = ramp(start, stop, np.arange(lo[k], hi[k]) * step[k], ovl[k])
        w = r if w is None else np.multiply.outer(w, r)
    return w


def blend_region(start, shape, rows, spacing, ovl, transform_of, *, coverage=False,
                 step=(1, 1, 1)):
    """Blended displacement (Z,Y,X,3 float32 µm) on one region of the field grid.

    Parameters
    ----------
    start, shape : sequences of 3 int
        Region of the field's voxel grid (z,y,x); the field grid is the fixed grid
        subsampled by ``step`` (field voxel c is fixed voxel c * step).
    rows : DataFrame
        Block-table rows to blend (already limited to aligned blocks).
    spacing : sequence of 3 float
        Fixed spacing, µm.
    ovl : sequence of 3 int
        Overlap voxels per side, as in the table.
    transform_of : callable
        ``transform_of(block_id)`` -> SimpleITK transform of the block, or None
        when the block contributes nothing (skipped at run time).
    coverage : bool
        Also return the boolean mask of voxels reached by at least one block.
    step : sequence of 3 int
        Field grid factor per axis (1 = the fixed grid).

    Returns
    -------
    (Z, Y, X, 3) float32 displacement, µm, z, y, x vectors (0 where no block reaches);
    with ``coverage`` also the (Z, Y, X) bool mask of voxels some block reaches.
    """
    start, shape = np.asarray(start, int), np.asarray(shape, int)
    step = np.asarray(step, int)
    stop = start + shape
    acc = np.zeros(tuple(shape) + (3,))
    wsum = np.zeros(tuple(shape))
    for _, row in rows.iterrows():
        lo = np.maximum(-(-np.array([row["z0"], row["y0"], row["x0"]]) // step), start)
        hi = np.minimum(-(-np.array([row["z1"], row["y1"], row["x1"]]) // step), stop)
        transform = transform_of(row["id"]) if np.all(hi > lo) else None
        if transform is None:
            continue
        d = displacement_on_grid(transform, lo, hi - lo, np.asarray(spacing, float) * step)
        w = block_weight(row, lo, hi, ovl, step)
        sl = tuple(slice(a, b) for a, b in zip(lo - start, hi - start))
        acc[sl] += d * w[..., None]
        wsum[sl] += w
    covered = wsum > 0
    acc[covered] /= wsum[covered][:, None]
    return (acc.astype(np.float32), covered) if coverage else acc.astype(np.float32)


def block_loader(path_of, cache_size=256):
    """``transform_of`` for :func:`blend_region` reading block files, with a small cache.

    Parameters
    ----------
    path_of : callable
        ``path_of(block_id)`` -> the block file.
    cache_size : int
        Block transforms kept in memory (least recently used dropped).

    Returns
    -------
    callable ``transform_of(block_id)`` -> SimpleITK transform, None for a skipped block.
    """
    @lru_cache(maxsize=cache_size)
    def transform_of(bid):
        results, qc, _ = load_block(path_of(bid))
        if qc["status"] == "skipped":
            return None
        return block_transform(results)
    return transform_of


def write_field_slab(out, table, slab, spacing, ovl, transform_of, *, step=(1, 1, 1)):
    """Blend every output chunk of one z slab into the zarr array ``out`` (Z,Y,X,3).

    Memory is bounded by one chunk and the cached block transforms, whatever the
    volume size.

    Parameters
    ----------
    out : zarr array (Z, Y, X, 3)
        The displacement field (µm, z, y, x vectors), written in place.
    table : DataFrame
        Block-table rows of the aligned blocks.
    slab : int
        z slab number (one chunk row of ``out``).
    spacing, ovl, transform_of, step
        As in :func:`blend_region`.

    Returns
    -------
    count : int
        Chunks written.
    jacobian : dict or None
        The slab's Jacobian statistics (:func:`~snakestream.fields.jacobian.merge_jacobian_stats`)
        over the voxels that aligned blocks reach: where none does, the field is 0 and
        steps at the edge of the aligned region, which lies in background by construction.
    """
    from scipy.ndimage import binary_erosion

    shape, chunks, step = out.shape[:3], write_unit(out), np.asarray(step, int)
    z0, z1 = slab_bounds(shape, chunks, slab)
    rows = rows_touching(table, *field_box((z0, 0, 0), (z1,) + tuple(shape[1:]), step))
    jac = []

    def fill(start, stop):
        near = rows_touching(rows, *field_box(start, stop, step))
        field, covered = blend_region(start, stop - start, near, spacing, ovl, transform_of,
                                      coverage=True, step=step)
        inner = binary_erosion(covered, np.ones((3, 3, 3)), border_value=1)
        jac.append(jacobian_stats(jacobian_det(field, np.asarray(spacing) * step)[inner]))
        return field

    return for_each_chunk(out, slab, fill), merge_jacobian_stats(jac)
