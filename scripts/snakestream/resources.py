"""Cluster resources of a block job, derived from the block size and the step settings."""

import math

import numpy as np

BASE_MB = 400          # Python + SimpleITK + zarr once imported
BYTES_PER_VOXEL = 48   # float32 crops, pyramid copies, gradients, masks (measured order)
MOVING_GROWTH = 1.5 ** 3  # default margin: a quarter of the region on each side
SECONDS_PER_SAMPLE_ITER = 1.5e-6  # one metric sample, one iteration, one thread


def block_voxels(cfg):
    """Voxels in a block's fixed region (core plus overlap on both sides)."""
    blocks = cfg["blocks"]
    size = np.asarray(blocks["blocksize"], float)
    return float(np.prod(size + 2 * np.round(size * blocks["overlap"])))


def block_mem_mb(cfg, attempt=1):
    """Memory request (MB) of one block job; grows with each retry."""
    if not cfg.get("blocks"):
        return BASE_MB
    voxels = block_voxels(cfg) * (1 + MOVING_GROWTH)
    return int(math.ceil((BASE_MB + voxels * BYTES_PER_VOXEL / 1e6) * attempt))


def block_runtime_min(cfg, attempt=1):
    """Wall-time request (minutes) of one block job from iterations and sampling."""
    if not cfg.get("blocks"):
        return 5
    voxels = block_voxels(cfg)
    seconds = 0.0
    for _, params in cfg["_block_steps"]:
        iters = params.get("optimizer_args", {}).get("numberOfIterations", 100)
        fraction = params.get("sampling_percentage") or 1.0
        levels = len(params.get("shrink_factors", [1]))
        seconds += iters * levels * voxels * fraction * SECONDS_PER_SAMPLE_ITER
    return int(math.ceil(max(5.0, 3 * seconds / 60) * attempt))
