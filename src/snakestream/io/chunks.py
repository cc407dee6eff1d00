"""Iteration over an array's chunk grid: which chunks cover a region, filling a slab.

A *slab* is one row of chunks along z (slab ``k`` covers z chunk ``k``); slab jobs
(gather, warp, inverse) each fill one, and a pyramid level is filled chunk by chunk
the same way, so memory stays one chunk whatever the volume size.
"""

import numpy as np

__all__ = ["chunk_starts", "for_each_chunk", "slab_bounds", "write_unit", "write_units"]


def chunk_starts(lo, hi, chunks):
    """Start corners of the output chunks covering ``[lo, hi)`` (z,y,x) on a chunk grid.

    Parameters
    ----------
    lo, hi : sequence of 3 int
        Region ``[lo, hi)`` in voxels, (z, y, x).
    chunks : sequence of 3 int
        Chunk shape (z, y, x) of the grid, which starts at voxel (0, 0, 0).

    Returns
    -------
    list of numpy.ndarray
        One int array of shape (3,) (z, y, x) per chunk touching the region, in C
        order; a start may lie below `lo` when `lo` is not on the grid.
    """
    axes = [range(a - a % c, b, c) for a, b, c in zip(lo, hi, chunks)]
    return [np.array(s) for s in np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T]


def slab_bounds(shape, chunks, slab):
    """z range ``[z0, z1)`` of slab number ``slab`` (one chunk row thick)."""
    z0 = int(slab) * int(chunks[0])
    return z0, min(z0 + int(chunks[0]), int(shape[0]))


def write_units(shape, chunks, inner=None):
    """What one job writes whole, and the chunks inside it, of an output on a grid.

    Parameters
    ----------
    shape : sequence of 3 int
        The output's grid, voxels, z, y, x.
    chunks : sequence of 3 int
        The configured write unit: the chunk of an unsharded output, the shard of
        a sharded one.
    inner : sequence of 3 int, optional
        Chunks inside each shard (Zarr v3 sharding); None for no sharding.

    Returns
    -------
    (write_unit, inner) : tuple of int, tuple of int or None
        Both no larger than the grid needs (a unit never exceeds the grid, rounded
        up to whole inner chunks), the unit a multiple of ``inner`` per axis.
    """
    shape = [int(n) for n in shape]
    if inner is None:
        return tuple(min(int(c), n) for c, n in zip(chunks, shape)), None
    inner = tuple(max(1, min(int(i), n)) for i, n in zip(inner, shape))
    unit = tuple(-(-min(int(c), -(-n // i) * i) // i) * i
                 for c, n, i in zip(chunks, shape, inner))
    return unit, inner


def write_unit(out):
    """(z, y, x) of what a job writes whole in ``out``: its shard when sharded, else its chunk."""
    return tuple((getattr(out, "shards", None) or out.chunks)[:3])


def for_each_chunk(out, slab, fill):
    """Write every chunk of one z slab of ``out`` (or of all of it) from ``fill``.

    A sharded Zarr v3 array is written one whole shard at a time (its slabs are one
    shard row thick), so a job never rewrites part of a shard another job writes.

    Parameters
    ----------
    out : zarr-like array, (Z, Y, X) or (Z, Y, X, C)
        Array written in place; its first three axes are the chunked (or sharded)
        z, y, x grid.
    slab : int or None
        Slab number (see :func:`slab_bounds`), or None for the whole array.
    fill : callable
        ``fill(start, stop)`` -> the values of voxels ``[start, stop)`` (two (3,) int
        arrays, z, y, x), shaped like ``out[start:stop]``.

    Returns
    -------
    int, the number of chunks (shards) written.
    """
    shape, chunks = tuple(out.shape[:3]), write_unit(out)
    z0, z1 = (0, shape[0]) if slab is None else slab_bounds(shape, chunks, slab)
    count = 0
    for start in chunk_starts((z0, 0, 0), (z1,) + shape[1:], chunks):
        stop = np.minimum(start + chunks, shape)
        out[tuple(slice(a, b) for a, b in zip(start, stop))] = fill(start, stop)
        count += 1
    return count
