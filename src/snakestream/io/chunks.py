"""Iteration over an array's chunk grid: which chunks cover a region."""

import numpy as np

__all__ = ["chunk_starts"]


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
