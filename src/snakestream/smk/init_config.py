"""``snakestream init``: a commented starting config for a fixed/moving pair.

The pair's shape and spacing are read through :func:`snakestream.io.open_volume`; the
settings that depend on them (alignment spacing, block size, chunks, control points)
are scaled from them, every other key is left to the schema's defaults and named in a
comment. The text explains each key and its choices, so the file is the user's guide
to editing it.
"""

import os

import numpy as np
import yaml

from snakestream.errors import InputError
from snakestream.io.volumes import open_volume

BLOCK_VOXELS = (32, 128, 128)  # block core (z, y, x) of the written config, at most
CHUNK_VOXELS = (64, 128, 128)  # output chunks / slab thickness, at most


def _flow(value):
    """``value`` as one line of YAML flow style (``[0.8, 0.4, 0.4]``, ``null``, ``s0``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def describe_input(path, dataset=None, *, option="--fixed-dataset"):
    """Open one input; {"path", "dataset", "shape", "spacing"} (spacing µm z, y, x).

    ``path`` is made absolute, so the config runs from any folder; ``option`` is the
    command-line option that names its dataset (shown in the fix of an error).
    """
    if not os.path.exists(path):
        raise InputError(path, "does not exist.", "give the path of a Zarr/N5 group, HDF5, "
                         "NRRD or TIFF file.")
    try:
        vol = open_volume(path, dataset)
    except InputError as err:
        if dataset is not None:
            raise
        raise InputError(path, err.problem, f"name the array with {option} D.") from None
    return {"path": os.path.abspath(path), "dataset": vol.dataset,
            "shape": [int(n) for n in vol.shape],
            "spacing": [round(float(s), 6) for s in vol.spacing]}


def _mask(path, dataset):
    if path is None:
        return "null"
    return _flow({"path": os.path.abspath(path), "dataset": dataset})


def config_text(fixed, moving, *, output, fixed_mask=None, fixed_mask_dataset=None):
    """The commented YAML of a starting config.

    Parameters
    ----------
    fixed, moving : dict
        :func:`describe_input` of each image.
    output : str
        The ``output`` folder.
    fixed_mask, fixed_mask_dataset : str, optional
        A fixed-image foreground mask (path and dataset), which enables skipping blocks
        below ``blocks.foreground_fraction``.
    """
    coarse = max(max(fixed["spacing"]), max(moving["spacing"]))
    align = round(4 * coarse, 4)  # µm: the global stage's resampled voxel size
    # at most BLOCK_VOXELS, and at least two blocks along each axis of a small image
    blocksize = [max(1, min(b, -(-n // 2))) for n, b in zip(fixed["shape"], BLOCK_VOXELS)]
    chunks = [min(n, c) for n, c in zip(fixed["shape"], CHUNK_VOXELS)]
    cps = round(8 * max(fixed["spacing"]), 4)
    fine = round(float(np.min(fixed["spacing"])), 4)
    return f"""\
# snakestream run configuration, written by `snakestream init`.
# Run it:  snakestream run THIS_FILE [--profile local|lsf|slurm] [snakemake options]
# Watch:   snakestream progress THIS_FILE --watch 60
# Every key not written here has its default in the installed config/schema.yaml.
# Units: µm; axis order everywhere: z, y, x.

# The image the result lives on (fixed) and the one moved onto it (moving).
#   path:    Zarr/OME-Zarr/N5 group, HDF5, NRRD or TIFF (absolute here, so the file runs
#            from any folder; relative paths are taken from the folder you run in)
#   dataset: array inside a Zarr/N5/HDF5 container (null: the only array, or OME level 0)
#   spacing: voxel size in µm, z y x, as read from the file; null reads the file's
#            metadata at run time; a value here overrides the file
#   mask:    foreground mask (path, or {{path, dataset}}), or null
#   4-D/5-D inputs: add `channel: 0` (or an OME channel label) and `timepoint: 0`.
# fixed shape (z, y, x voxels): {fixed["shape"]}
fixed:
  path: {_flow(fixed["path"])}
  dataset: {_flow(fixed["dataset"])}
  spacing: {_flow(fixed["spacing"])}
  mask: {_mask(fixed_mask, fixed_mask_dataset)}
# moving shape (z, y, x voxels): {moving["shape"]}
moving:
  path: {_flow(moving["path"])}
  dataset: {_flow(moving["dataset"])}
  spacing: {_flow(moving["spacing"])}
  mask: null

# Folder for every result (deform.zarr, aligned.zarr, report.html, logs/, blocks/).
output: {_flow(output)}

# Global stage: bigstream's steps, a list of [name, settings], run in order on the
# whole (downsampled) pair. Names: rigid, affine, and the feature steps (ransac, ...).
#   alignment_spacing: µm voxel size the pair is resampled to (coarser: faster)
#   shrink_factors / smooth_sigmas (µm): the pyramid, coarse to fine, one per level
#   initial_condition: CENTER starts from the images' centres aligned (or null)
#   optimizer_args: SimpleITK gradient descent (learningRate, minStep, numberOfIterations)
global_steps:
  - [rigid,  {{alignment_spacing: {align}, shrink_factors: [2, 1], smooth_sigmas: [{2 * align}, {align}],
              initial_condition: CENTER,
              optimizer_args: {{learningRate: 0.25, minStep: 0., numberOfIterations: 400}}}}]
  - [affine, {{alignment_spacing: {align}, shrink_factors: [2, 1], smooth_sigmas: [{2 * align}, {align}],
              optimizer_args: {{learningRate: 0.25, minStep: 0., numberOfIterations: 400}}}}]

# Block stage (delete the whole section, or set `blocks: null`, to stop after the
# global affine): the fixed image is cut into blocks, each aligned on its own, and
# the block transforms are blended into one displacement field.
blocks:
  blocksize: {_flow(blocksize)}      # block core, fixed voxels (z y x); one job per block
  overlap: 0.5                # fraction of blocksize added on each side for blending
  foreground_fraction: 0.5    # with a fixed mask: blocks with less foreground are not aligned
  moving_margin: null         # µm around the moving crop for local motion (null: 1/4 block)
  on_block_failure: fallback  # fallback: a failed block keeps the global affine; fail: stop
  steps:
    # affine: a block's own affine; deform: a B-spline on a control-point grid (µm);
    # metric C: correlation (also MMI, MS); alignment_spacing null: full resolution
    - [affine, {{alignment_spacing: null, shrink_factors: [1], smooth_sigmas: [{fine}],
                optimizer_args: {{learningRate: 0.25, minStep: 0., numberOfIterations: 200}}}}]
    - [deform, {{control_point_spacing: {cps}, control_point_levels: [1], alignment_spacing: null,
                shrink_factors: [1], smooth_sigmas: [{fine}],
                optimizer_args: {{learningRate: 0.25, minStep: 0., numberOfIterations: 100}}}}]

# Chunks (z y x) of deform.zarr and aligned.zarr; one gather and one warp job per z slab.
output_chunks: {_flow(chunks)}
# Resampling of the moving image: order 1 linear (intensities), 0 nearest (labels).
warp: {{order: 1}}
# threads: {{global: 1, gather: 1, warp: 1}}   ITK threads per stage (global > 1: faster,
#                                            not bit-reproducible)
# pyramid_levels: 3                          OME-Zarr levels of the aligned images
# inverse: false                             also the inverse field and fixed_on_moving.zarr
"""


def write_config(path, text, *, force=False):
    """Write ``text`` to ``path``; an existing file is kept unless ``force``."""
    if os.path.exists(path) and not force:
        raise InputError(path, "exists already.", "choose another name, or add --force "
                         "to overwrite it.")
    with open(path, "w") as fh:
        fh.write(text)
