"""Multiscale pyramids: the levels beside a volume, and reading the coarsest one that fits.

A volume opened from a dataset of a multiscale group has siblings at coarser
resolutions: an OME-Zarr image's ``multiscales`` datasets (``0``, ``1``, ... or
``s0``, ``s1``, ...; NGFF 0.4 and 0.5), or an N5 (or Zarr) group's ``s0 … sN``
with ``downsamplingFactors`` (x, y, z; the n5-viewer / BigDataViewer
convention). Stages that need the image at a coarse spacing (the global stage,
the block table's foreground test, the report's overviews) read the coarsest
level that gives them what they need instead of the configured (full) level.

Every level is described relative to the configured one (the *full* level), so
a spacing given in the config carries over: a level's spacing is the full
level's times the ratio of their metadata scales (OME ``scale``, or N5
``downsamplingFactors``), and its offset is where its voxel 0's centre lies
from the full level's voxel 0's centre, µm (z, y, x): the difference of the OME
``translation`` values, or ``(ratio - 1) / 2`` full voxels for N5 (block
means). Levels finer than the full one, and levels that do not span the full
level's physical extent (within one of their own voxels), are not used.

Entry points: :func:`pyramid_levels`, :func:`coarsest_level`, :func:`pick_level`
(open the level), :func:`read_coarse` (a block mean from it) and :func:`read_near`
(a block mean at about a spacing).
"""

import collections
import re

import numpy as np

from snakestream.io import n5, zarr_store
from snakestream.io.datasets import label
from snakestream.io.downsample import read_downsampled
from snakestream.io.metadata import as_floats, ome_levels
from snakestream.io.volumes import format_of, nonfinite_error, open_volume

__all__ = ["Coarse", "Level", "PREVIEW_VOXELS", "SPACING_TOLERANCE", "coarsest_level",
           "full_level", "open_level", "pick_level", "pyramid_levels", "read_coarse",
           "read_near", "require_finite_preview"]

# A level of a pyramid: its dataset path in the container, shape (z, y, x),
# spacing (µm, z, y, x) and offset (µm, z, y, x: its voxel 0's centre from the
# full level's voxel 0's centre).
Level = collections.namedtuple("Level", "dataset shape spacing offset")

# What read_coarse returns: the block-mean data (float32, z, y, x), its spacing
# and offset (µm, z, y, x, as a Level's), the level read and the log line.
Coarse = collections.namedtuple("Coarse", "data spacing offset level message")

_MEMBERS = {"zarr": zarr_store.group_members, "n5": n5.group_members}
_N5_LEVEL = re.compile(r"s\d+")
# read_coarse accepts a level when a whole block mean of it lands this close
# (relative, every axis) to the spacing a block mean of the full level gives.
SPACING_TOLERANCE = 0.1
# require_finite_preview reads at most this many voxels (16 MiB of float32) per volume
PREVIEW_VOXELS = 1 << 22


def full_level(volume):
    """The configured level of `volume` itself, as a :data:`Level` (offset 0)."""
    return Level(volume.dataset, tuple(volume.shape), np.asarray(volume.spacing, float),
                 np.zeros(3))


def pyramid_levels(volume):
    """The levels of the multiscale group that holds `volume`, finest first.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        An opened volume (its dataset is the full level).

    Returns
    -------
    levels : list of Level
        The full level first, then each coarser level that spans the same
        physical extent, by decreasing voxel count. Only the full level when the
        volume is not in a multiscale group (or its format has none).
    skipped : list of str
        One phrase per sibling level left out, and why (for the log).
    """
    full = full_level(volume)
    kind = format_of(volume.path)
    if kind not in _MEMBERS or not volume.dataset:
        return [full], []
    group, _, name = volume.dataset.rpartition("/")
    attrs, members = _MEMBERS[kind](volume.path, group)
    relative = _ome_relative(attrs, name) or _n5_relative(members, name)
    levels, skipped = [full], []
    for child, (ratio, shift) in sorted(relative.items()):
        if child == name or child not in members:
            continue
        level = Level(f"{group}/{child}" if group else child, tuple(members[child][0][-3:]),
                      full.spacing * ratio, shift * full.spacing)
        problem = _level_problem(level, full)
        if problem:
            skipped.append(f"{level.dataset!r} ({problem})")
        else:
            levels.append(level)
    levels[1:] = sorted(levels[1:], key=lambda lv: -int(np.prod(lv.shape)))
    return levels, skipped


def _ome_relative(attrs, name):
    """{dataset: (scale ratio, offset in full voxels)} (z, y, x) from OME 'multiscales'."""
    levels = ome_levels(attrs, name)
    if not levels:
        return {}
    scale, shift = next((s, t) for path, s, t in levels if path == name)
    return {path: (s / scale, (t - shift) / scale) for path, s, t in levels}


def _n5_relative(members, name):
    """{dataset: (ratio, offset in full voxels)} (z, y, x) from s0 … sN's downsamplingFactors."""
    if not _N5_LEVEL.fullmatch(name):
        return {}
    factors = {}
    for child, (_, attrs) in members.items():
        value = as_floats(attrs.get("downsamplingFactors", [1, 1, 1]))
        if _N5_LEVEL.fullmatch(child) and isinstance(value, np.ndarray) and value.shape == (3,):
            factors[child] = value[::-1]
    if name not in factors:
        return {}
    return {child: (f / factors[name], (f / factors[name] - 1) / 2)
            for child, f in factors.items()}


def _level_problem(level, full):
    """Why `level` cannot stand in for `full` (a phrase), or None."""
    if not np.all(np.isfinite(level.spacing)) or np.any(level.spacing < full.spacing * (1 - 1e-6)):
        return "finer than the configured level"
    extent = np.asarray(level.shape) * level.spacing
    full_extent = np.asarray(full.shape) * full.spacing
    if np.any(np.abs(extent - full_extent) > level.spacing * (1 + 1e-6)):
        return (f"covers {np.round(extent, 3).tolist()} µm, not the configured level's "
                f"{np.round(full_extent, 3).tolist()} µm")
    return None


def coarsest_level(levels, needed, *, whole=False):
    """The coarsest level whose spacing is no coarser than `needed` on every axis.

    Parameters
    ----------
    levels : list of Level
        From :func:`pyramid_levels`, the full level first.
    needed : sequence of 3 float
        Largest usable spacing, µm (z, y, x).
    whole : bool
        Also require that a whole-voxel block mean of the level lands within
        :data:`SPACING_TOLERANCE` of `needed` on every axis.

    Returns
    -------
    level : Level
        The level with the fewest voxels that qualifies; the full level when none
        does.
    factors : numpy.ndarray
        Block-mean factors (int, z, y, x) from the level toward `needed`
        (``max(1, round(needed / spacing))``).
    """
    needed = np.asarray(needed, float)
    best = levels[0]
    for level in levels[1:]:
        if np.any(level.spacing > needed * (1 + 1e-6)):
            continue
        got = level.spacing * _factors(level, needed)
        if whole and np.any(np.abs(got - needed) > SPACING_TOLERANCE * needed):
            continue
        if np.prod(level.shape) < np.prod(best.shape):
            best = level
    return best, _factors(best, needed)


def _factors(level, needed):
    return np.maximum(np.round(needed / level.spacing), 1).astype(int)


def open_level(volume, level):
    """`level` of `volume`'s pyramid opened as a Volume (`volume` itself for its own level),
    at the same channel and time point, its origin ``volume.origin + level.offset``, with
    the same ``nan_fill`` and ``log``."""
    if level.dataset == volume.dataset:
        return volume
    opened = open_volume(volume.path, level.dataset, spacing=level.spacing.tolist(),
                         origin=(volume.origin + level.offset).tolist(),
                         channel=volume.channel, timepoint=volume.timepoint,
                         nan_fill=volume.nan_fill)
    opened.log = volume.log
    return opened


def pick_level(volume, needed, *, purpose, whole=False):
    """Open the coarsest level of `volume`'s pyramid that is no coarser than `needed`.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The configured (full) level.
    needed : sequence of 3 float
        Largest usable spacing, µm (z, y, x).
    purpose : str
        Who reads it, for the log line (e.g. "global stage").
    whole : bool
        As in :func:`coarsest_level`.

    Returns
    -------
    opened : snakestream.io.volumes.Volume
        The level opened (`volume` itself for the full level).
    level : Level
    factors : numpy.ndarray
        Block-mean factors (int, z, y, x) from the level toward `needed`.
    message : str
        One line naming the level used, its spacing, and levels left out.
    """
    levels, skipped = pyramid_levels(volume)
    level, factors = coarsest_level(levels, needed, whole=whole)
    need = np.round(np.asarray(needed, float), 4).tolist()
    if len(levels) == 1 and not skipped:
        text = f"{purpose}: {label(volume.path, volume.dataset)} (no pyramid levels)"
    elif level.dataset == volume.dataset:
        text = (f"{purpose}: {volume.path} configured level {level.dataset!r} of "
                f"{len(levels)} usable levels (no coarser one fits {need} µm)")
    else:
        ratio = np.prod(volume.shape) / np.prod(level.shape)
        text = (f"{purpose}: {volume.path} pyramid level {level.dataset!r} of "
                f"{len(levels)} usable levels (spacing {np.round(level.spacing, 4).tolist()} "
                f"µm, {ratio:.4g}x fewer voxels than {volume.dataset!r}; the coarsest "
                f"that fits {need} µm)")
    if skipped:
        text += "; not used: " + ", ".join(skipped)
    return open_level(volume, level), level, factors, text


def read_coarse(volume, factors, *, purpose):
    """A block mean of `volume` by `factors`, read from the coarsest pyramid level that gives it.

    The level is :func:`pick_level`'s with ``needed = volume.spacing * factors``
    and ``whole=True``: for a pyramid whose levels halve the grid and factors that
    are powers of two, the result is the block mean of the full level on the same
    grid, read from as many times fewer voxels as the level has.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The configured (full) level.
    factors : sequence of 3 int
        Block-mean factors (z, y, x) >= 1 relative to `volume`.
    purpose : str
        Who reads it, for the log line (e.g. "global stage").

    Returns
    -------
    Coarse
        ``data`` float32 (z, y, x); ``spacing`` µm (z, y, x), the level's spacing
        times the factors applied to it (within :data:`SPACING_TOLERANCE` of
        ``volume.spacing * factors``); ``offset`` µm (z, y, x), the centre of
        ``data``'s voxel 0 from the centre of `volume`'s voxel 0; ``level``; and
        ``message``, one line naming the level used (and levels left out).
    """
    needed = volume.spacing * np.asarray(factors, int)
    return _block_mean_of(*pick_level(volume, needed, purpose=purpose, whole=True))


def read_near(volume, spacing, *, purpose):
    """A block mean of `volume` at about `spacing`, from the coarsest level no coarser.

    Unlike :func:`read_coarse`, the result's spacing need not be a whole multiple of
    the full level's: the level is :func:`pick_level`'s for ``needed = spacing``, and
    its block-mean factors are ``max(1, round(spacing / level spacing))``, so the
    result is within a factor of 1.5 of `spacing` wherever the full level is finer.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The configured (full) level.
    spacing : sequence of 3 float
        Wanted spacing, µm (z, y, x).
    purpose : str
        Who reads it, for the log line (e.g. "auto mask").

    Returns
    -------
    Coarse
        As :func:`read_coarse`'s (``offset`` from the full level's voxel 0, µm).
    """
    return _block_mean_of(*pick_level(volume, spacing, purpose=purpose))


def _block_mean_of(opened, level, rest, text):
    """:data:`Coarse` of the block mean by `rest` of an opened pyramid `level`."""
    data = read_downsampled(opened, rest)
    spacing = level.spacing * rest
    offset = level.offset + (rest - 1) / 2 * level.spacing
    text += f"; block mean {rest.tolist()} -> {np.round(spacing, 4).tolist()} µm"
    return Coarse(data, spacing, offset, level, text)


def _centre_box(shape, budget):
    """(z, y, x) slices of a box of at most `budget` voxels at the centre of `shape`,
    shrunk by the same factor on every axis (the whole array when it fits)."""
    shape = np.asarray(shape, int)
    scale = min(1.0, (budget / max(float(np.prod(shape)), 1.0)) ** (1 / 3))
    size = np.clip(np.floor(shape * scale).astype(int), 1, shape)
    lo = (shape - size) // 2
    return tuple(slice(int(a), int(a + n)) for a, n in zip(lo, size))


def require_finite_preview(volume, *, key, budget=PREVIEW_VOXELS):
    """InputError if the coarsest pyramid level of a float volume holds NaN or infinity.

    The check the workflow makes at parse time, before any job runs: it reads the
    volume's coarsest usable level (the level the global stage reads from, or the
    volume itself without a pyramid), all of it when it has at most `budget` voxels,
    else a box of `budget` voxels at its centre. Integer volumes and volumes with a
    ``nan_fill`` are not read. NaN voxels elsewhere are found by the first job that
    reads them, which counts them at full resolution.

    Parameters
    ----------
    volume : snakestream.io.volumes.Volume
        The configured (full) level.
    key : str
        Its config key ("fixed", "moving"), for the message.
    budget : int
        Largest number of voxels read.

    Raises
    ------
    InputError
        One line naming the file and level, the count among the voxels read, and
        the fix (:func:`~snakestream.io.volumes.nonfinite_error`).
    """
    if volume.nan_fill is not None or not np.issubdtype(volume.dtype, np.inexact):
        return
    levels, _ = pyramid_levels(volume)
    level = min(levels, key=lambda lv: int(np.prod(lv.shape)))
    opened = open_level(volume, level)
    box = _centre_box(opened.shape, budget)
    data = opened.read(box)
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if not bad:
        return
    where = "all" if data.shape == tuple(opened.shape) else f"a centre box {list(data.shape)} of"
    first = level.dataset == volume.dataset
    name = "the configured level" if first else f"pyramid level {level.dataset!r}"
    raise nonfinite_error(label(volume.path, volume.dataset), bad, data.size, key=key,
                          what=f"voxels ({where} {name}, checked before any job runs)")
