"""Block-mean downsampling of volumes, streamed over z slabs to bound memory."""

import numpy as np

from snakestream.errors import InputError
from snakestream.io.datasets import label

__all__ = ["block_max", "block_mean", "read_downsampled"]

_SLAB_BUDGET_BYTES = 256 * 2**20


def _check_factors(factors, where):
    values = np.asarray(factors)
    if values.shape != (3,) or not np.all(values == np.round(values)) or np.any(values < 1):
        raise InputError(where, f"downsampling factors {factors!r} are not 3 positive integers.",
                         "give integer factors (z, y, x) >= 1")
    return tuple(int(v) for v in values)


def _slab_depth(volume, fz):
    """Planes per read: a multiple of `fz`, aligned with z chunks if that fits the budget."""
    if not volume.chunks:
        return fz
    aligned = -(-volume.chunks[0] // fz) * fz
    plane_bytes = volume.shape[1] * volume.shape[2] * volume.dtype.itemsize
    return aligned if aligned * plane_bytes <= _SLAB_BUDGET_BYTES else fz


def block_mean(slab, factors):
    """Mean over blocks of `factors` (z, y, x); edge blocks average what exists.

    Parameters
    ----------
    slab : numpy.ndarray
        Voxels (z, y, x), any numeric dtype.
    factors : sequence of 3 int
        Block shape (z, y, x), each >= 1.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``ceil(slab.shape / factors)`` (z, y, x); sums are
        taken in float64, and a partial block at an upper edge is the mean of the
        voxels it holds (no padding).
    """
    total = slab
    counts = np.ones(1)
    for axis, f in enumerate(factors):
        n = slab.shape[axis]
        starts = np.arange(0, n, f)
        total = np.add.reduceat(total, starts, axis=axis, dtype=np.float64)
        sizes = np.diff(np.append(starts, n)).astype(np.float64)
        counts = np.multiply.outer(counts, sizes) if axis else sizes
    return (total / counts).astype(np.float32)


def block_max(array, factors):
    """Maximum over blocks of ``factors`` voxels (z, y, x), e.g. of a mask.

    The blocks are :func:`block_mean`'s; the result keeps ``array``'s dtype (bool,
    integers or floats).
    """
    out = np.asarray(array)
    for axis, f in enumerate(factors):
        out = np.maximum.reduceat(out, np.arange(0, out.shape[axis], f), axis=axis)
    return out


def read_downsampled(volume, factors):
    """Block-mean downsample a volume, streaming over z slabs.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        Source volume.
    factors : sequence of 3 int
        Integer factors (z, y, x) >= 1.

    Returns
    -------
    numpy.ndarray
        float32 array (z, y, x) of shape ``ceil(volume.shape / factors)``; partial
        edge blocks are averaged over the voxels that exist. Its spacing is
        ``volume.spacing * factors`` µm. Peak memory is about one slab of
        z-chunk depth (or ``factors[0]`` planes) plus the output.

    Raises
    ------
    InputError
        `factors` are not 3 positive integers.
    """
    factors = _check_factors(factors, label(volume.path, volume.dataset))
    out_shape = [-(-n // f) for n, f in zip(volume.shape, factors)]
    out = np.empty(out_shape, dtype=np.float32)
    depth = _slab_depth(volume, factors[0])
    for z0 in range(0, volume.shape[0], depth):
        z1 = min(z0 + depth, volume.shape[0])
        slab = volume.read((slice(z0, z1), slice(None), slice(None)))
        out[z0 // factors[0]: -(-z1 // factors[0])] = block_mean(slab, factors)
    return out
