"""The run's layout, computed at parse time from image metadata and the fixed mask.

The one place where the grids of a run are computed: the fixed grid and its output
chunks and slabs, deform.zarr's grid, and the block grid (:class:`BlockGrid`: blocks,
their cores and clipped regions, the overlap in voxels, which blocks are aligned and
which touch a slab). The block table on disk is :meth:`BlockGrid.table`.

``blocksize`` is the core of a block in fixed voxels (z,y,x); ``overlap`` is a
fraction of it added on *each* side (bigstream's meaning), so with overlap 0.5
a block's region is twice its core and neighbours' regions cover a skipped
block completely. Regions are clipped to the image; cores tile it exactly.

A fixed ``mask: auto`` is written by a job (rule auto_mask, a checkpoint): until it
is, the layout has no mask (``Layout.mask_pending``) and the workflow's input functions
that list a slab's or row's blocks wait for the checkpoint, then make the layout again.

Every Snakemake process (the main one and each cluster job) builds the layout, so it
must stay cheap: it opens the volumes' metadata, never the images' pixels, and
keeps the block grid as NumPy arrays (50,000 blocks take about 0.1 s, mostly their ids).
With a fixed mask, each block's foreground fraction decides whether the block is
a job at all; the fractions are computed once (one streaming pass over the mask,
or over its coarsest pyramid level with 8 voxels across a block core, the only pixels
read at parse time) and cached under ``<output>/.cache``, so later
parses only load a small array.
"""

import hashlib
import json
import os
from dataclasses import KW_ONLY, dataclass

import numpy as np

from snakestream.errors import ConfigError
from snakestream.grid.blocks import COLUMNS, block_id, foreground_fractions, n_slabs, table_bounds
from snakestream.grid.inputs import auto_mask_pending, is_auto_mask, open_image, open_mask
from snakestream.io.atomic import atomic_path
from snakestream.io.chunks import slab_bounds, write_units
from snakestream.io.pyramids import pick_level, require_finite_preview


def overlap_voxels(blocksize, overlap):
    """Voxels added on each side of the core, per axis (int array, z,y,x)."""
    if not 0 <= float(overlap) < 1:
        raise ConfigError("blocks.overlap", f"{overlap!r} must be a fraction in [0, 1).",
                          "bigstream's usual value is 0.5.")
    return np.round(np.asarray(blocksize) * float(overlap)).astype(int)


def region_shape(blocksize, overlap):
    """Shape (voxels, z,y,x) of a block's unclipped region: the core plus overlap on both sides."""
    return np.asarray(blocksize, int) + 2 * overlap_voxels(blocksize, overlap)


def grid_shape(shape, blocksize):
    """Number of blocks per axis (z,y,x)."""
    return tuple(int(np.ceil(n / b)) for n, b in zip(shape, blocksize))


def is_aligned(fractions, threshold):
    """Which blocks are registered: foreground fraction >= threshold and > 0."""
    fractions = np.asarray(fractions, float)
    return (fractions >= threshold) & (fractions > 0)


def touching(lo, hi, start, stop):
    """Which regions ``[lo, hi)`` (N x 3 voxels, z,y,x) intersect the box ``[start, stop)``."""
    lo, hi = np.asarray(lo).reshape(-1, 3), np.asarray(hi).reshape(-1, 3)
    return np.all((lo < np.asarray(stop)) & (hi > np.asarray(start)), axis=1)


def rows_touching(table, start, stop):
    """Rows of a block table whose (clipped) region intersects ``[start, stop)`` (z,y,x)."""
    return table[touching(*table_bounds(table), start, stop)]


def field_box(start, stop, step):
    """The fixed-voxel box ``(lo, hi)`` that field voxels ``[start, stop)`` (z,y,x) sit on.

    Field voxel ``c`` sits on fixed voxel ``c * step``; a block touches a region of
    the field grid when its fixed region meets this box.
    """
    step = np.asarray(step, int)
    return np.asarray(start, int) * step, (np.asarray(stop, int) - 1) * step + 1


@dataclass(kw_only=True)
class BlockGrid:
    """Overlapping blocks of the fixed grid, in grid order (z slowest).

    Attributes
    ----------
    blocksize : np.ndarray
        Block core size, fixed voxels (3,) z,y,x.
    overlap : np.ndarray
        Voxels added on each side of a core (3,) z,y,x.
    ids : np.ndarray of str
        Block ids (N,), :func:`snakestream.grid.blocks.block_id`.
    index : np.ndarray
        Grid indices (N, 3) iz,iy,ix.
    core_lo, core_hi : np.ndarray
        Cores ``[core_lo, core_hi)`` (N, 3), fixed voxels; they tile the image.
    lo, hi : np.ndarray
        Regions ``[lo, hi)`` (N, 3), fixed voxels: cores grown by ``overlap``, clipped.
    foreground : np.ndarray
        Fraction of each core inside the fixed mask (N,); 1 without a mask.
    aligned : np.ndarray of bool
        Whether each block is registered (a job) or below ``threshold``.
    threshold : float or None
        The foreground fraction below which a block is not aligned.
    """

    blocksize: np.ndarray
    overlap: np.ndarray
    ids: np.ndarray
    index: np.ndarray
    core_lo: np.ndarray
    core_hi: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    foreground: np.ndarray
    aligned: np.ndarray
    threshold: float = None

    @classmethod
    def build(cls, shape, blocksize, overlap, *, foreground=None, threshold=None):
        """The block grid of a fixed image.

        Parameters
        ----------
        shape : sequence of 3 int
            Fixed image shape (z,y,x).
        blocksize : sequence of 3 int
            Block core in fixed voxels (z,y,x).
        overlap : float
            Fraction of the core added on each side, in [0, 1).
        foreground : array or None
            Fraction of each core inside the fixed mask, in grid order or the grid's
            shape (:func:`snakestream.grid.blocks.foreground_fractions`). Without it
            every block counts as foreground.
        threshold : float or None
            Blocks with a smaller foreground fraction are not aligned (bigstream's
            ``foreground_percentage``); required with ``foreground``.

        Returns
        -------
        BlockGrid
        """
        shape, blocksize = np.asarray(shape, int), np.asarray(blocksize, int)
        if blocksize.shape != (3,) or np.any(blocksize < 1):
            raise ConfigError("blocks.blocksize",
                              f"{blocksize.tolist()} must be 3 positive voxel counts.")
        ovl = overlap_voxels(blocksize, overlap)
        index = np.indices(grid_shape(shape, blocksize)).reshape(3, -1).T
        core_lo = index * blocksize
        core_hi = np.minimum(core_lo + blocksize, shape)
        ids = np.array([block_id(*i) for i in index.tolist()])  # Python ints format faster
        if foreground is None:
            fractions, aligned = np.ones(len(ids)), np.ones(len(ids), bool)
        elif threshold is None:
            raise ValueError("a foreground threshold is needed with foreground fractions")
        else:
            fractions = np.ravel(foreground)
            aligned = is_aligned(fractions, threshold)
        return cls(blocksize=blocksize, overlap=ovl, ids=ids, index=index,
                   core_lo=core_lo, core_hi=core_hi, lo=np.maximum(core_lo - ovl, 0),
                   hi=np.minimum(core_hi + ovl, shape), foreground=fractions, aligned=aligned,
                   threshold=threshold)

    def table(self):
        """The block table (:data:`snakestream.grid.blocks.COLUMNS`) as a DataFrame.

        One row per block: id, grid index, region and core (fixed voxels, z,y,x),
        foreground (rounded to 4 digits), aligned, and why a block is not aligned.
        """
        import pandas as pd  # imported here: parse time does not need it

        columns = {"id": self.ids.tolist()}
        for k, ax in enumerate("zyx"):
            columns[f"i{ax}"] = self.index[:, k]
        for k, ax in enumerate("zyx"):
            columns.update({f"{ax}0": self.lo[:, k], f"{ax}1": self.hi[:, k],
                            f"c{ax}0": self.core_lo[:, k], f"c{ax}1": self.core_hi[:, k]})
        columns["foreground"] = [round(float(f), 4) for f in self.foreground]
        columns["aligned"] = self.aligned.astype(bool)
        columns["reason"] = ["" if ok else f"foreground {f:.3f} < {self.threshold}"
                             for f, ok in zip(self.foreground, self.aligned)]
        return pd.DataFrame(columns, columns=COLUMNS)

    def aligned_touching(self, start, stop):
        """Ids of aligned blocks whose region intersects ``[start, stop)`` (fixed voxels)."""
        return self.ids[touching(self.lo, self.hi, start, stop) & self.aligned].tolist()

    def aligned_in_row(self, iz):
        """Ids of aligned blocks (the ones that are jobs) in grid row ``iz`` (z index)."""
        return self.ids[(self.index[:, 0] == iz) & self.aligned].tolist()

    @property
    def rows(self):
        """Grid z indices present."""
        return sorted(set(self.index[:, 0].tolist()))


def build_table(shape, blocksize, overlap, foreground=None, threshold=None):
    """The block table of a fixed image shape: ``BlockGrid.build(...).table()``."""
    return BlockGrid.build(shape, blocksize, overlap, foreground=foreground,
                           threshold=threshold).table()


# The foreground test reads the coarsest level of a multiscale mask that still has
# this many voxels across a block core on every axis.
MASK_VOXELS_PER_CORE = 8


def mask_for_blocks(mask, fix_vol, blocksize):
    """The level of a fixed mask the block table's foreground test reads.

    Parameters
    ----------
    mask : snakestream.io.volumes volume
        The configured fixed mask (its full level).
    fix_vol : snakestream.io.volumes volume
        The fixed image (its spacing is used).
    blocksize : sequence of 3 int
        Block core in fixed voxels (z,y,x).

    Returns
    -------
    level_vol : snakestream.io.volumes volume
        The coarsest level of the mask's pyramid whose spacing is at most a
        :data:`MASK_VOXELS_PER_CORE`-th of a block core (µm) on every axis; the
        mask itself when it has no pyramid or no level is that fine.
    offset : numpy.ndarray
        Centre of its voxel 0 from the mask's voxel 0, µm (z,y,x).
    message : str
        One line naming the level (:func:`snakestream.io.pyramids.pick_level`).
    """
    core_um = np.asarray(blocksize, float) * np.asarray(fix_vol.spacing)
    level_vol, level, _, message = pick_level(mask, core_um / MASK_VOXELS_PER_CORE,
                                              purpose="block table foreground")
    return level_vol, level.offset, message


def fixed_block_grid(fix_vol, fixed, *, blocksize, overlap, threshold, cache_dir, log=None,
                     write_cache=True):
    """The block grid of the fixed volume, its mask deciding which blocks are aligned.

    Parameters
    ----------
    fix_vol : snakestream.io.volumes volume
        The fixed image (its shape and spacing are used, no pixels).
    fixed : dict
        The config's ``fixed`` entry (its ``mask``, if any, is read once and cached).
    blocksize, overlap, threshold
        The config's ``blocks.blocksize``, ``blocks.overlap`` and
        ``blocks.foreground_fraction``.
    cache_dir : str
        Folder of the foreground cache (:func:`cached_foreground`).
    log : callable, optional
        Called with one line naming the mask level read (:func:`mask_for_blocks`).
    write_cache : bool
        False (a dry run) reads an existing cache but writes none.

    Returns
    -------
    BlockGrid
    """
    mask = open_mask(fixed, fix_vol)
    foreground = None
    if mask is not None:
        level_vol, offset, message = mask_for_blocks(mask, fix_vol, blocksize)
        if log is not None:
            log(message)
        foreground = cached_foreground(level_vol, fix_vol.shape, fix_vol.spacing, blocksize,
                                       cache_dir, offset=offset,
                                       every_file=is_auto_mask(fixed), write=write_cache)
    grid = BlockGrid.build(fix_vol.shape, blocksize, overlap, foreground=foreground,
                           threshold=threshold)
    require_aligned_blocks(grid, fix_vol.shape, mask=mask)
    return grid


def require_aligned_blocks(grid, shape, *, mask=None):
    """ConfigError unless at least one block of `grid` passes the foreground test.

    Without it a run would succeed with the global affine only and no word said. The
    line counts the blocks and the ones that pass, and names the setting to change:
    ``fixed.mask`` when no block core holds any foreground (the line then starts with
    the mask's file), else ``blocks.foreground_fraction`` (at most the largest fraction
    found) or a ``blocks.blocksize`` smaller than the image.

    Parameters
    ----------
    grid : BlockGrid
        The fixed image's block grid.
    shape : sequence of 3 int
        Fixed image shape (z,y,x), for the message.
    mask : Volume, optional
        The fixed mask the foreground fractions come from.
    """
    n, best = len(grid.ids), float(np.max(grid.foreground, initial=0.0))
    if np.any(grid.aligned):
        return
    passing = (f"0 of {n} blocks pass the foreground test (core fraction inside "
               f"fixed.mask >= blocks.foreground_fraction {grid.threshold})")
    if best <= 0:
        where = "blocks" if mask is None else f"blocks: fixed.mask {mask.path}"
        raise ConfigError(where, f"the mask is empty in every block core, so {passing}.",
                          "check fixed.mask (foreground is > 0; its dataset, channel and "
                          "timepoint), or remove it")
    raise ConfigError("blocks", f"{passing}; the largest block fraction is {best:.3f}.",
                      f"lower blocks.foreground_fraction to {np.floor(best * 1000) / 1000:g} "
                      f"or less, or make blocks.blocksize (now {grid.blocksize.tolist()}; "
                      f"the image is {[int(n) for n in shape]} voxels) smaller")


def check_other_inputs(cfg, fix_vol, mov_vol):
    """Open the masks and extra volumes the layout does not need, metadata only.

    So a bad entry among them (a missing file, a 5-D array without ``channel`` or
    ``timepoint``, a mask of another extent) stops the run at parse time with its one
    line, before any job runs. The fixed mask is opened by :func:`fixed_block_grid`
    when there is a block stage.
    """
    for spec, vol, needed in ((cfg["fixed"], fix_vol, cfg["blocks"] is None),
                              (cfg["moving"], mov_vol, True)):
        if needed and not auto_mask_pending(spec):
            open_mask(spec, vol)
    for extra in cfg["extra_volumes"]:
        open_image(extra)


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
    fixed_dtype, moving_shape, moving_spacing
        The fixed image's dtype, the moving image's shape (z,y,x) and spacing (µm).
    origin, moving_origin : np.ndarray
        Voxel 0's position of the fixed and moving images, µm, z,y,x (0 when None):
        the origins of the outputs on each grid.
    field_step : tuple of int
        deform.zarr stores every ``field_step``-th fixed voxel per axis (z,y,x).
    zarr_format : int
        Zarr version (2 or 3) of the outputs.
    shard_chunks : tuple of int or None
        Chunks inside each shard of the outputs on the fixed grid (``chunks`` is
        then the shard shape); None without sharding.
    blocks : BlockGrid or None
        The block grid; None when the config has no block stage.
    mask_pending : bool
        The fixed mask is ``auto`` and not written yet: ``blocks`` is the grid
        without a mask (every block aligned) until a layout is made once it is.
    """

    shape: tuple
    spacing: np.ndarray
    chunks: tuple
    moving_dtype: str
    _: KW_ONLY
    fixed_dtype: str = None
    moving_shape: tuple = None
    moving_spacing: np.ndarray = None
    origin: np.ndarray = None
    moving_origin: np.ndarray = None
    field_step: tuple = (1, 1, 1)
    zarr_format: int = 2
    shard_chunks: tuple = None
    blocks: BlockGrid = None
    mask_pending: bool = False

    @classmethod
    def from_config(cls, cfg, *, write_cache=True):
        """Layout of a validated config (opens both volumes' metadata, and the fixed mask once).

        A fixed ``mask: auto`` not written yet leaves the block grid unmasked and
        ``mask_pending`` set; the workflow makes the layout again once it is.
        ``write_cache=False`` (a dry run) writes nothing under ``<output>/.cache``.
        """
        fix, mov = open_image(cfg["fixed"]), open_image(cfg["moving"])
        require_finite_preview(fix, key="fixed")
        require_finite_preview(mov, key="moving")
        fmt = cfg["output_zarr"]
        chunks, inner = write_units(fix.shape, cfg["output_chunks"], fmt["shard_chunks"])
        layout = cls(tuple(int(n) for n in fix.shape), fix.spacing, chunks, str(mov.dtype),
                     fixed_dtype=str(fix.dtype), moving_shape=tuple(int(n) for n in mov.shape),
                     moving_spacing=mov.spacing, origin=fix.origin, moving_origin=mov.origin,
                     field_step=tuple(int(f) for f in cfg["field_downsample"]),
                     zarr_format=fmt["format"], shard_chunks=inner)
        blocks = cfg["blocks"]
        if blocks is not None:
            layout.mask_pending = auto_mask_pending(cfg["fixed"])
            layout.blocks = fixed_block_grid(
                fix, {} if layout.mask_pending else cfg["fixed"],
                blocksize=blocks["blocksize"], overlap=blocks["overlap"],
                threshold=blocks["foreground_fraction"],
                cache_dir=os.path.join(cfg["output"], ".cache"), write_cache=write_cache)
        check_other_inputs(cfg, fix, mov)
        return layout

    def __post_init__(self):
        self.origin = np.zeros(3) if self.origin is None else np.asarray(self.origin, float)
        self.moving_origin = (np.zeros(3) if self.moving_origin is None
                              else np.asarray(self.moving_origin, float))

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

    def _field_units(self):
        return write_units(self.field_shape,
                           [-(-c // f) for c, f in zip(self.chunks, self.field_step)],
                           None if self.shard_chunks is None else
                           [-(-c // f) for c, f in zip(self.shard_chunks, self.field_step)])

    @property
    def field_chunks(self):
        """Chunks (shards when sharded) of deform.zarr: the output's, subsampled likewise."""
        return self._field_units()[0]

    @property
    def field_shard_chunks(self):
        """Chunks inside deform.zarr's shards (None without sharding)."""
        return self._field_units()[1]

    @property
    def n_field_slabs(self):
        """Number of gather jobs (z rows of field chunks)."""
        return n_slabs(self.field_shape, self.field_chunks)

    def field_slabs_for(self, slab):
        """Gather slabs a warp slab's field values come from (with one voxel to spare)."""
        z0, z1 = slab_bounds(self.shape, self.chunks, slab)
        f0 = max(z0 // self.field_step[0] - 1, 0)
        f1 = min((z1 - 1) // self.field_step[0] + 2, self.field_shape[0])
        c = self.field_chunks[0]
        return list(range(f0 // c, (f1 - 1) // c + 1))

    def blocks_in_field_slab(self, slab):
        """Ids of aligned blocks whose region touches gather slab ``slab`` of the field grid."""
        z0, z1 = slab_bounds(self.field_shape, self.field_chunks, slab)
        start, stop = field_box((z0, 0, 0), (z1,) + self.field_shape[1:], self.field_step)
        return self.blocks.aligned_touching(start, stop)

    @property
    def moving_chunks(self):
        """Output chunks (shards) of images on the moving grid (the inverse warp)."""
        return write_units(self.moving_shape, self.chunks, self.shard_chunks)[0]

    @property
    def moving_shard_chunks(self):
        """Chunks inside the shards of images on the moving grid (None without sharding)."""
        return write_units(self.moving_shape, self.chunks, self.shard_chunks)[1]

    @property
    def n_moving_slabs(self):
        """Number of z slabs of the moving grid."""
        return n_slabs(self.moving_shape, self.moving_chunks)

    def blocks_in_row(self, iz):
        """Ids of aligned blocks (the ones that are jobs) in grid row ``iz`` (z index)."""
        return self.blocks.aligned_in_row(iz)

    @property
    def block_rows(self):
        """Grid z indices present."""
        return self.blocks.rows


def _mtimes(path, dataset, *, every_file=False):
    """Modification times that change when a mask store is rewritten (and, with
    `every_file`, the newest of its files': a chunk edited in place)."""
    paths = [path] + ([os.path.join(path, dataset.strip("/"))] if dataset else [])
    times = [os.stat(p).st_mtime_ns for p in paths if os.path.exists(p)]
    if every_file:
        times.append(max((os.stat(os.path.join(folder, f)).st_mtime_ns
                          for folder, _, files in os.walk(path) for f in files), default=0))
    return times


def cached_foreground(mask, shape, spacing, blocksize, cache_dir, *, offset=(0.0, 0.0, 0.0),
                      every_file=False, write=True):
    """:func:`snakestream.grid.blocks.foreground_fractions`, cached in ``cache_dir``.

    The cache key covers the mask's path, dataset, selection (channel, time point),
    shape, spacing, offset (µm, z,y,x: a pyramid level's) and modification times, and
    the fixed grid and block size; delete ``cache_dir`` after editing a mask in place
    without changing its files' times. With `every_file` the key also has the newest
    modification time of any file in the mask's store (a walk over it: meant for the
    small masks ``mask: auto`` writes, which the user may edit chunk by chunk).
    ``write=False`` (a dry run) computes the fractions without storing them.
    """
    key = json.dumps([os.path.abspath(mask.path), mask.dataset, list(mask.selection),
                      list(mask.shape), np.asarray(mask.spacing).tolist(), list(shape),
                      np.asarray(spacing).tolist(), [int(b) for b in blocksize],
                      _mtimes(mask.path, mask.dataset, every_file=every_file),
                      np.asarray(offset, float).tolist()])
    path = os.path.join(cache_dir, f"foreground-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    fractions = foreground_fractions(mask, shape, spacing, blocksize, offset=offset)
    if not write:
        return fractions
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, fractions)
    return fractions
