"""Cluster resources of each job, derived from the config, not flat guesses.

Memory requests are in MB, runtime requests in minutes; both are multiplied by
Snakemake's ``attempt`` so a retry after an out-of-memory or time-limit kill asks
for more. Every rule's request can still be overridden per rule with
``--set-resources RULE:mem_mb=... RULE:runtime=...`` (or ``set-resources`` in a
profile).

Calibration (one core of a 2.x GHz Xeon, SimpleITK 2.5, single-threaded; see
``benchmarks/``): a 24x48x48 block (48x96x96 voxels with overlap 0.5) with the
bigstream talk's affine (800 iterations on every voxel) takes ~0.12 s per
iteration (~5e-7 s per sample) and peaks at ~280 MB. A deform iteration costs
~1e-6 s per sample on the sparse engine whatever the mesh, and ~1.0-1.5e-8 s per
sample *and parameter* on SimpleITK's (``engine: itk`` or settings the sparse
engine does not cover; ``benchmarks/bspline_iter.py``). The runtime model charges
every iteration (no early stop) at the slowest measured cost, then doubles it; the
memory model is ~1.7x the measured peak.
"""

import math

import numpy as np

from snakestream.grid.layout import region_shape
from snakestream.register.steps import uses_sparse_engine

# Python + SimpleITK + zarr once imported (~400 MB), plus the Snakemake that a cluster
# job step starts around the rule (~150 MB resident; a real SLURM with memory
# enforcement killed block steps at 482 MB against a 447 MB request).
BASE_MB = 600
BYTES_PER_VOXEL = 48      # float32 crops, pyramid copies, gradients, masks (measured order)
MOVING_GROWTH = 1.5 ** 3  # default margin: a quarter of the region on each side
# Seconds per metric sample per optimizer iteration, one thread (slowest measured).
SECONDS_PER_SAMPLE = {"rigid": 6e-7, "affine": 6e-7, "deform": 2e-6}
SECONDS_PER_SAMPLE_PARAMETER_ITK = 1.5e-8  # deform on SimpleITK: dense Jacobian
FEATURE_STEP_SECONDS = 30  # a ransac/random step on one block
SAFETY = 2                 # runtime requests are twice the worst case estimate
MIN_BLOCK_MINUTES = 5
# Global stage: whole image at alignment_spacing.
GLOBAL_SLAB_MB = 256       # io.read_downsampled reads through slabs of this size
MIN_GLOBAL_MINUTES, MAX_GLOBAL_MINUTES = 30, 24 * 60
GLOBAL_FEATURE_SECONDS = 20 * 60
# Auto mask: the image at the mask spacing in float32, its smoothed and shifted copies,
# the mask and fill_holes' work arrays; reading the full level at worst (no pyramid).
BYTES_PER_MASK_VOXEL = 24
SECONDS_PER_READ_VOXEL = 2e-8  # decoding plus block mean, generous
MIN_MASK_MINUTES = 10
# Gather and warp: one z slab, one output chunk at a time.
BYTES_PER_CHUNK_VOXEL = 256  # field/coordinates in float64 plus blending weights
SECONDS_PER_SLAB_VOXEL = 5e-6  # measured ~1.5-2 us per voxel (demo), all blocks blended
MIN_SLAB_MB, MIN_SLAB_MINUTES = 1000, 10
# Pyramid: one chunk of a level from the 2x2x2 (at most) finer chunks below it, float64.
BYTES_PER_PYRAMID_VOXEL = 8 * 8 * 2
# Report: full-resolution slice tiles (9 stops x 3 axes, <= 256 x 256 voxels), the parts
# of the moving image and field they sample, and whole fixed z slices under the block
# map; budgeted as the old overviews (4 x 256^3 float64), which covers the 560 MB peak
# measured on 256 x 1024 x 1024 (benchmarks/report_size.py).
REPORT_OVERVIEW_VOXELS = 256 ** 3
REPORT_OVERVIEWS = 4


def block_shape(cfg):
    """Shape (voxels, z,y,x) of a block's fixed region (core plus overlap on both sides)."""
    return region_shape(cfg["blocks"]["blocksize"], cfg["blocks"]["overlap"])


def block_voxels(cfg):
    """Voxels in a block's fixed region (core plus overlap on both sides)."""
    return float(np.prod(block_shape(cfg)))


def _level_factor(shrink):
    """Voxel reduction of one pyramid level (a shrink factor or one per axis)."""
    return float(np.prod(shrink)) if np.ndim(shrink) else float(shrink) ** 3


def _spacing_factor(params, spacing):
    """Voxel reduction from resampling to ``alignment_spacing`` (1 when unknown)."""
    target = params.get("alignment_spacing")
    if not target or spacing is None:
        return 1.0
    return float(np.prod(np.maximum(float(target) / np.asarray(spacing, float), 1.0)))


def bspline_parameters(params, shape, spacing):
    """Parameters of a deform step's B-spline over a region of ``shape`` voxels.

    Mesh as ``align._bspline`` (extent / control_point_spacing, cubic: +3 per axis),
    three components; 1 µm voxels when ``spacing`` is unknown.
    """
    spacing = np.ones(3) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape, float) * spacing
    mesh = np.maximum(np.floor(extent / float(params["control_point_spacing"])), 1)
    return 3 * float(np.prod(mesh + 3))


def step_seconds(name, params, voxels, spacing=None, shape=None):
    """Worst-case seconds of one registration step on ``voxels`` voxels, one thread.

    Every pyramid level runs ``numberOfIterations`` iterations on its samples
    (all voxels of the level, or ``sampling_percentage`` of them). A deform step on
    SimpleITK's engine also scales with its B-spline parameters (region ``shape``).
    """
    if name not in SECONDS_PER_SAMPLE:
        return FEATURE_STEP_SECONDS
    iterations = params.get("optimizer_args", {}).get("numberOfIterations", 100)
    fraction = 1.0
    if params.get("sampling", "NONE") != "NONE":
        fraction = params.get("sampling_percentage") or 1.0
    voxels = voxels / _spacing_factor(params, spacing)
    samples = sum(voxels / _level_factor(s) for s in params.get("shrink_factors") or [1])
    per_sample = SECONDS_PER_SAMPLE[name]
    if name == "deform" and not uses_sparse_engine(params):
        shape = shape if shape is not None else [voxels ** (1 / 3)] * 3
        per_sample = SECONDS_PER_SAMPLE_PARAMETER_ITK * bspline_parameters(params, shape, spacing)
    return iterations * samples * fraction * per_sample


def block_mem_mb(cfg, attempt=1):
    """Memory request (MB) of one block job; grows with each retry."""
    if cfg["blocks"] is None:
        return BASE_MB * attempt
    voxels = block_voxels(cfg) * (1 + MOVING_GROWTH)
    return int(math.ceil(BASE_MB + voxels * BYTES_PER_VOXEL / 1e6)) * attempt


def block_runtime_min(cfg, attempt=1, spacing=None):
    """Wall-time request (minutes) of one block job from its size and steps."""
    if cfg["blocks"] is None:
        return MIN_BLOCK_MINUTES * attempt
    shape = block_shape(cfg)
    seconds = sum(step_seconds(name, params, float(np.prod(shape)), spacing, shape)
                  for name, params in cfg["_block_steps"])
    return int(math.ceil(max(MIN_BLOCK_MINUTES, SAFETY * seconds / 60))) * attempt


def _global_voxels(cfg, shape, spacing):
    """Voxels of the fixed image at the finest global alignment spacing."""
    steps = [p for _, p in cfg["_global_steps"]]
    finest = min((p.get("alignment_spacing") or 0.0) for p in steps) if steps else 0.0
    spacing = np.asarray(spacing, float)
    factor = np.maximum(finest / spacing, 1.0) if finest else np.ones(3)
    return float(np.prod(np.ceil(np.asarray(shape, float) / factor))), factor


def global_mem_mb(cfg, shape, spacing, attempt=1):
    """Memory request (MB) of the global alignment: both images at alignment spacing."""
    voxels, _ = _global_voxels(cfg, shape, spacing)
    return int(math.ceil(BASE_MB + GLOBAL_SLAB_MB + 2 * voxels * BYTES_PER_VOXEL / 1e6)) * attempt


def global_runtime_min(cfg, shape, spacing, attempt=1):
    """Wall-time request (minutes) of the global alignment, clamped to 30 min .. 24 h."""
    voxels = float(np.prod(shape))
    seconds = sum(GLOBAL_FEATURE_SECONDS if name not in SECONDS_PER_SAMPLE
                  else step_seconds(name, params, voxels, spacing)
                  for name, params in cfg["_global_steps"])
    minutes = min(max(MIN_GLOBAL_MINUTES, SAFETY * seconds / 60), MAX_GLOBAL_MINUTES)
    return int(math.ceil(minutes)) * attempt


def auto_mask_mem_mb(shape, spacing, mask_spacing, attempt=1):
    """Memory request (MB) of an auto mask job: the image at about `mask_spacing` µm."""
    factor = np.maximum(float(mask_spacing) / np.asarray(spacing, float), 1.0)
    voxels = float(np.prod(np.ceil(np.asarray(shape, float) / factor)))
    return int(math.ceil(BASE_MB + GLOBAL_SLAB_MB + voxels * BYTES_PER_MASK_VOXEL / 1e6)) * attempt


def auto_mask_runtime_min(shape, attempt=1):
    """Wall-time request (minutes) of an auto mask job: reading the full level at worst."""
    seconds = float(np.prod(shape)) * SECONDS_PER_READ_VOXEL
    minutes = min(max(MIN_MASK_MINUTES, SAFETY * seconds / 60), MAX_GLOBAL_MINUTES)
    return int(math.ceil(minutes)) * attempt


def slab_mem_mb(chunks, attempt=1):
    """Memory request (MB) of a gather or warp job (one output chunk at a time)."""
    voxels = float(np.prod(chunks))
    return int(math.ceil(max(MIN_SLAB_MB, BASE_MB + voxels * BYTES_PER_CHUNK_VOXEL / 1e6))) * attempt


def slab_runtime_min(shape, chunks, attempt=1):
    """Wall-time request (minutes) of a gather or warp job over one z slab."""
    voxels = float(min(chunks[0], shape[0]) * shape[1] * shape[2])
    minutes = max(MIN_SLAB_MINUTES, SAFETY * voxels * SECONDS_PER_SLAB_VOXEL / 60)
    return int(math.ceil(minutes)) * attempt


def pyramid_mem_mb(chunks, attempt=1):
    """Memory request (MB) of a pyramid job (one output chunk of a level at a time)."""
    voxels = float(np.prod(chunks))
    return int(math.ceil(max(MIN_SLAB_MB, BASE_MB + voxels * BYTES_PER_PYRAMID_VOXEL / 1e6))) * attempt


def report_mem_mb(attempt=1):
    """Memory request (MB) of the report: its slice tiles and what they sample."""
    overviews = REPORT_OVERVIEWS * REPORT_OVERVIEW_VOXELS * 8 / 1e6
    return int(math.ceil(BASE_MB + GLOBAL_SLAB_MB + overviews)) * attempt
