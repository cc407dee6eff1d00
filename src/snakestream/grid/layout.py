"""The run's layout, computed at parse time from image metadata and the fixed mask.

Every Snakemake process (the main one and each cluster job) builds this, so it
must stay cheap: it opens the volumes' metadata, never the images' pixels, and
keeps the block grid as NumPy arrays (50,000 blocks take a few milliseconds).
With a fixed mask, each block's foreground fraction decides whether the block is
a job at all; the fractions are computed once (one streaming pass over the mask)
and cached under ``<output>/.cache``, so later parses only load a small array.
"""

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from snakestream.grid.blocks import block_id, foreground_fractions, grid_shape, is_aligned, n_slabs, overlap_voxels
from snakestream.io.atomic import atomic_path
from snakestream.io.volumes import open_volume



@dataclass
class Layout:
    """Fixed grid, output chunking and (optionally) the block grid.

    Attributes
    ----------
    shape : tuple of int
        Fixed image shape, z,y,x.
    spacing : np.ndarray
        Fixed spacing, µm, z,y,x.
    chunks : tuple of int
        Output chunk shape of deform.zarr / aligned.zarr (z,y,x).
    moving_dtype : str
        dtype of the moving image (that of aligned.zarr).
    ids, index, lo, hi : arrays or None
        Block ids, grid indices (N,3), and clipped regions [lo, hi) (N,3).
    foreground, aligned : arrays or None
        Per block: fraction of the core in the fixed mask (1 without a mask) and
        whether it is registered (a job) or below the threshold.
    """

    shape: tuple
    spacing: np.ndarray
    chunks: tuple
    moving_dtype: str
    fixed_dtype: str = None
    moving_shape: tuple = None
    moving_spacing: np.ndarray = None
    field_step: tuple = (1, 1, 1)
    ids: np.ndarray = None
    index: np.ndarray = None
    lo: np.ndarray = None
    hi: np.ndarray = None
    foreground: np.ndarray = None
    aligned: np.ndarray = None

    @classmethod
    def from_config(cls, cfg):
        """Layout of a validated config (opens both volumes' metadata)."""
        fix = open_volume(cfg["fixed"]["path"], cfg["fixed"].get("dataset"),
                          cfg["fixed"].get("spacing"))
        mov = open_volume(cfg["moving"]["path"], cfg["moving"].get("dataset"),
                          cfg["moving"].get("spacing"))
        chunks = tuple(min(int(c), int(n)) for c, n in zip(cfg["output_chunks"], fix.shape))
        layout = cls(tuple(int(n) for n in fix.shape), fix.spacing, chunks, str(mov.dtype),
                     str(fix.dtype), tuple(int(n) for n in mov.shape), mov.spacing)
        layout.field_step = tuple(int(f) for f in cfg.get("field_downsample", (1, 1, 1)))
        if cfg.get("blocks"):
            blocks = cfg["blocks"]
            layout.add_blocks(blocks["blocksize"], blocks["overlap"])
            from snakestream.smk.runtime import open_mask

            mask = open_mask(cfg["fixed"], fix)
            if mask is not None:
                cache = os.path.join(cfg["output"], ".cache")
                layout.foreground = cached_foreground(mask, layout.shape, layout.spacing,
                                                      blocks["blocksize"], cache).ravel()
            layout.aligned = is_aligned(layout.foreground, blocks.get("foreground_fraction", 0.5))
        return layout

    def add_blocks(self, blocksize, overlap):
        """Compute the block grid (same ids and regions as blocks.build_table)."""
        blocksize = np.asarray(blocksize, int)
        ovl = overlap_voxels(blocksize, overlap)
        self.index = np.indices(grid_shape(self.shape, blocksize)).reshape(3, -1).T
        core0 = self.index * blocksize
        core1 = np.minimum(core0 + blocksize, self.shape)
        self.lo = np.maximum(core0 - ovl, 0)
        self.hi = np.minimum(core1 + ovl, self.shape)
        self.ids = np.array([block_id(*i) for i in self.index])
        self.foreground = np.ones(len(self.ids))
        self.aligned = np.ones(len(self.ids), bool)

    @property
    def n_slabs(self):
        """Number of one-chunk-thick z slabs for gather and warp jobs."""
        return n_slabs(self.shape, self.chunks)

    @property
    def field_shape(self):
        """Shape of deform.zarr's grid (the fixed grid subsampled by ``field_step``)."""
        return tuple(-(-n // f) for n, f in zip(self.shape, self.field_step))

    @property
    def field_spacing(self):
        """Spacing of deform.zarr's grid, µm."""
        return self.spacing * np.asarray(self.field_step)

    @property
    def field_chunks(self):
        """Chunks of deform.zarr (the output chunks subsampled likewise)."""
        return tuple(max(1, min(-(-c // f), n)) for c, f, n in
                     zip(self.chunks, self.field_step, self.field_shape))

    @property
    def n_field_slabs(self):
        """Number of gather jobs (z rows of field chunks)."""
        return n_slabs(self.field_shape, self.field_chunks)

    def field_slabs_for(self, slab):
        """Gather slabs a warp slab's field values come from (with one voxel to spare)."""
        z0 = slab * self.chunks[0]
        z1 = min(z0 + self.chunks[0], self.shape[0])
        f0 = max(z0 // self.field_step[0] - 1, 0)
        f1 = min((z1 - 1) // self.field_step[0] + 2, self.field_shape[0])
        c = self.field_chunks[0]
        return list(range(f0 // c, (f1 - 1) // c + 1))

    def blocks_in_field_slab(self, slab):
        """Ids of aligned blocks whose region overlaps gather slab ``slab`` of the field grid."""
        f = self.field_step[0]
        z0 = slab * self.field_chunks[0] * f
        z1 = min((slab + 1) * self.field_chunks[0], self.field_shape[0]) * f
        return self.ids[(self.lo[:, 0] < z1) & (self.hi[:, 0] > z0) & self.aligned].tolist()

    @property
    def moving_chunks(self):
        """Output chunks of images on the moving grid (the inverse warp)."""
        return tuple(min(c, n) for c, n in zip(self.chunks, self.moving_shape))

    @property
    def n_moving_slabs(self):
        """Number of z slabs of the moving grid."""
        return n_slabs(self.moving_shape, self.moving_chunks)

    def blocks_in_row(self, iz):
        """Ids of aligned blocks (the ones that are jobs) in grid row ``iz`` (z index)."""
        return self.ids[(self.index[:, 0] == iz) & self.aligned].tolist()

    @property
    def block_rows(self):
        """Grid z indices present."""
        return sorted(set(self.index[:, 0].tolist()))


def _mtimes(path, dataset):
    """Modification times that change when a mask store is rewritten."""
    paths = [path] + ([os.path.join(path, dataset.strip("/"))] if dataset else [])
    return [os.stat(p).st_mtime_ns for p in paths if os.path.exists(p)]


def cached_foreground(mask, shape, spacing, blocksize, cache_dir):
    """:func:`snakestream.grid.blocks.foreground_fractions`, cached in ``cache_dir``.

    The cache key covers the mask's path, dataset, shape, spacing and modification
    times, and the fixed grid and block size; delete ``cache_dir`` after editing a
    mask in place without changing its files' times.
    """
    key = json.dumps([os.path.abspath(mask.path), mask.dataset, list(mask.shape),
                      np.asarray(mask.spacing).tolist(), list(shape), np.asarray(spacing).tolist(),
                      [int(b) for b in blocksize], _mtimes(mask.path, mask.dataset)])
    path = os.path.join(cache_dir, f"foreground-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    fractions = foreground_fractions(mask, shape, spacing, blocksize)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, fractions)
    return fractions
