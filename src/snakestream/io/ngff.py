"""OME-Zarr image outputs: level 0 written by slab jobs, a pyramid after.

Zarr v2 groups carry NGFF 0.4 metadata (``multiscales`` in the group attributes),
Zarr v3 groups NGFF 0.5 (the same under ``attrs["ome"]`` with ``version``), with
optional sharding of every level.

The group holds arrays ``0``, ``1``, ... with ``multiscales`` metadata giving each
level's scale and translation in micrometers (level 0's translation is the image's
origin, the position of its voxel 0), so napari (OME-Zarr reader) and neuroglancer open
the image as it is. Levels halve y and x, and z only while it is not coarser
than y/x, which keeps anisotropic light-sheet data sensible.
"""

import numpy as np
import zarr

from snakestream.io.chunks import for_each_chunk, write_units
from snakestream.io.zarr_store import zarr_compressor, zarr_layout


def level_factors(spacing, levels):
    """Cumulative integer downsampling factors (z,y,x) of each pyramid level."""
    spacing = np.asarray(spacing, float)
    factors, current = [np.ones(3, int)], np.ones(3, int)
    for _ in range(1, levels):
        step = np.where(spacing * current * 2 <= 1.5 * 2 * (spacing * current).min(), 2, 1)
        current = current * step
        factors.append(current.copy())
    return factors


def _level_origin(spacing, factors, origin):
    """Voxel 0's position (µm, z, y, x) of a level of block means by `factors`."""
    origin = np.zeros(3) if origin is None else np.asarray(origin, float)
    return origin + (np.asarray(factors) - 1) / 2 * np.asarray(spacing, float)


def multiscales(spacing, factors, name, *, origin=None, version="0.4"):
    """NGFF ``multiscales`` attribute for the given level factors (µm); each level's
    translation is `origin` (level 0's voxel 0, µm z, y, x, default 0) plus the offset of
    its block centres. 0.5 puts the version beside it (:func:`ome_attrs`) instead of
    inside."""
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [float(s) for s in np.asarray(spacing) * f]},
        {"type": "translation",
         "translation": [float(t) for t in _level_origin(spacing, f, origin)]}]}
        for k, f in enumerate(factors)]
    entry = {"name": name, "axes": axes, "datasets": datasets}
    return [{"version": version, **entry} if version == "0.4" else entry]


def ome_attrs(spacing, factors, name, zarr_format, *, origin=None):
    """The group attributes of an image: NGFF 0.4 for Zarr v2, 0.5 for Zarr v3."""
    if zarr_format == 2:
        return {"multiscales": multiscales(spacing, factors, name, origin=origin)}
    return {"ome": {"version": "0.5",
                    "multiscales": multiscales(spacing, factors, name, origin=origin,
                                               version="0.5")}}


def create_image(path, shape, dtype, chunks, spacing, *, origin=None, levels=3, name="image",
                 attrs=None, zarr_format=2, shard_chunks=None):
    """Create an empty NGFF image group, overwriting what is at `path`.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``*.zarr`` directory of the group.
    shape, chunks : tuple of 3 int
        Level-0 array and chunk shape (z, y, x); each level keeps the chunks,
        clipped to its shape.
    dtype : numpy dtype
        Voxel type of every level.
    spacing : sequence of 3 float
        Level-0 voxel size (z, y, x) in µm.
    origin : sequence of 3 float, optional
        Level-0 voxel 0's position (z, y, x) in µm (the OME 'translation'), default 0.
    levels : int
        Number of pyramid levels (see :func:`level_factors`).
    name : str
        Image name in the ``multiscales`` metadata.
    attrs : dict, optional
        Extra JSON attributes of the group.
    zarr_format : {2, 3}
        Zarr v2 with NGFF 0.4, or Zarr v3 with NGFF 0.5.
    shard_chunks : tuple of 3 int, optional
        Chunks inside each shard (Zarr v3); ``chunks`` is then the shard shape.

    Returns
    -------
    zarr.Array
        Level ``0``, filled with zeros, open for writing. Each level array has
        attributes 'spacing' and 'origin' (z, y, x, µm); the group's 'multiscales' give
        each level's 'translation' (its origin).
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    factors = level_factors(spacing, levels)
    for k, f in enumerate(factors):
        lshape = tuple(int(np.ceil(n / s)) for n, s in zip(shape, f))
        unit, inner = write_units(lshape, chunks, shard_chunks)
        arr = root.create_array(str(k), shape=lshape, dtype=dtype, fill_value=0,
                                overwrite=True, compressors=zarr_compressor(zarr_format),
                                **zarr_layout(unit, inner))
        arr.attrs["spacing"] = [float(s) for s in np.asarray(spacing) * f]
        arr.attrs["origin"] = [float(t) for t in _level_origin(spacing, f, origin)]
    root.attrs.update({**(attrs or {}),
                       **ome_attrs(spacing, factors, name, zarr_format, origin=origin)})
    return root["0"]


def _reduce(block, factors, labels):
    if labels:  # keep label values: take one voxel per cell
        return block[::factors[0], ::factors[1], ::factors[2]]
    pad = [(0, (-n) % f) for n, f in zip(block.shape, factors)]
    block = np.pad(block.astype(np.float64), pad, mode="edge")
    shape = []
    for n, f in zip(block.shape, factors):
        shape += [n // f, f]
    return block.reshape(shape).mean(axis=(1, 3, 5))


def build_level(root, k, labels=False):
    """Fill level ``k`` from level ``k-1`` chunk by chunk (bounded memory)."""
    src, dst = root[str(k - 1)], root[str(k)]
    step = np.round(np.array(dst.attrs["spacing"]) / np.array(src.attrs["spacing"])).astype(int)

    def fill(start, stop):
        region = tuple(slice(a * f, b * f) for a, b, f in zip(start, stop, step))
        block = _reduce(np.asarray(src[region]), step, labels)
        block = block[:stop[0] - start[0], :stop[1] - start[1], :stop[2] - start[2]]
        if np.issubdtype(dst.dtype, np.integer) and not labels:
            block = np.rint(block)
        return block.astype(dst.dtype)

    for_each_chunk(dst, None, fill)


def build_pyramid(path, labels=False):
    """Fill every level above 0 of an NGFF image group from level 0.

    Parameters
    ----------
    path : str or os.PathLike
        Group made by :func:`create_image`, level ``0`` written.
    labels : bool
        Label image: keep values (one voxel per cell) instead of block means.

    Returns
    -------
    int
        Number of levels in the group.
    """
    root = zarr.open_group(str(path), mode="r+")
    ome = root.attrs.get("ome", root.attrs)
    n = len(ome["multiscales"][0]["datasets"])
    for k in range(1, n):
        build_level(root, k, labels)
    return n
