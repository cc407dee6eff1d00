"""Block reduction of arrays by integer factors: the one block-mean downsampling."""

import numpy as np


def _block_reduce(array, factors, ufunc, dtype=None):
    """``ufunc.reduceat`` over consecutive blocks of ``factors`` (z, y, x), axis by axis."""
    out = array
    for axis, f in enumerate(factors):
        out = ufunc.reduceat(out, np.arange(0, array.shape[axis], f), axis=axis, dtype=dtype)
    return out


def block_mean(array, factors):
    """Mean over blocks of ``factors`` voxels.

    Parameters
    ----------
    array : (Z, Y, X) array
    factors : sequence of 3 int
        Block size per axis, z, y, x, each >= 1.

    Returns
    -------
    float32 array of shape ``ceil(array.shape / factors)``. Sums are taken in
    float64; edge blocks that the array does not fill average the voxels that exist.
    """
    counts = np.ones(1)
    for axis, f in enumerate(factors):
        n = array.shape[axis]
        sizes = np.diff(np.append(np.arange(0, n, f), n)).astype(np.float64)
        counts = np.multiply.outer(counts, sizes) if axis else sizes
    return (_block_reduce(array, factors, np.add, np.float64) / counts).astype(np.float32)


def block_max(array, factors):
    """Maximum over blocks of ``factors`` voxels (z, y, x), same dtype (e.g. a mask's).

    Returns an array of shape ``ceil(array.shape / factors)``; edge blocks take the
    maximum of the voxels that exist.
    """
    return _block_reduce(np.asarray(array), factors, np.maximum)
