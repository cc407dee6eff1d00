"""The run's input volumes, opened from their config entries; masks in their image's frame.

A config names the fixed and moving volumes (and each of ``extra_volumes``) as
``{path, dataset, channel, timepoint, spacing, origin, mask}`` mappings, and a mask as a path
or ``{path, dataset, channel, timepoint}`` (config/schema.yaml); ``channel`` and
``timepoint`` pick one 3-D volume out of an array with channel and time axes
(:mod:`snakestream.io.selection`). Both the parse-time layout (block selection by the
fixed mask) and the rule scripts open them through these functions.

A ``mask: auto`` reaches here as the entry of the file rule auto_mask writes
(:func:`snakestream.config.auto_masks`, with an ``auto`` key), so it is opened like a
given mask once written; before that, :func:`auto_mask_pending` says so and
:func:`open_mask` stops with one line.
"""

import os

import numpy as np

from snakestream.errors import InputError
from snakestream.io.volumes import open_volume


def _selection(spec):
    """The ``channel`` and ``timepoint`` keys of a volume or mask entry, for open_volume."""
    return {"channel": spec.get("channel"), "timepoint": spec.get("timepoint")}


def open_image(spec):
    """Open a volume from its config mapping (path, dataset, channel, timepoint, spacing,
    origin; nan_fill: what NaN voxels read as, None to read them as stored)."""
    return open_volume(spec["path"], spec.get("dataset"), spec.get("spacing"),
                       origin=spec.get("origin"), nan_fill=spec.get("nan_fill"),
                       **_selection(spec))


def open_mask(spec, image_vol):
    """Open a config ``mask`` entry (path string or {path, dataset, channel, timepoint})
    in ``image_vol``'s frame.

    A mask without its own spacing metadata is taken to span the same physical
    extent as its image. A mask lies on its image: its origin is the image's
    (``image_vol.origin``), whatever its file says, so a mask written without origin
    metadata (e.g. a TIFF) still fits an image that has one. Returns None when no
    mask is configured; InputError for a ``mask: auto`` not written yet.
    """
    mask = spec.get("mask")
    if not mask:
        return None
    mask = {"path": mask} if isinstance(mask, str) else mask
    if auto_mask_pending(spec):
        raise InputError(mask["path"], "(mask: auto) is not written yet.",
                         "run the workflow: its rule auto_mask writes it before any "
                         "stage that reads the mask.")
    path, dataset = mask["path"], mask.get("dataset")
    selection = {**_selection(mask), "origin": image_vol.origin.tolist()}
    try:
        vol = open_volume(path, dataset, **selection)
    except InputError as err:
        if "spacing" not in str(err):
            raise
        shape = np.asarray(open_volume(path, dataset, [1.0, 1.0, 1.0], **selection).shape)
        spacing = np.asarray(image_vol.shape) * image_vol.spacing / shape
        return open_volume(path, dataset, spacing.tolist(), **selection)
    check_mask_extent(vol, image_vol)
    return vol


def is_auto_mask(spec):
    """Whether a volume entry's mask is ``mask: auto`` (written by the run)."""
    mask = spec.get("mask")
    return isinstance(mask, dict) and bool(mask.get("auto"))


def auto_mask_pending(spec):
    """Whether a volume entry's mask is ``auto`` and its file is not written yet."""
    return is_auto_mask(spec) and not os.path.exists(os.path.join(spec["mask"]["path"],
                                                                  ".zattrs"))


def check_mask_extent(mask_vol, image_vol):
    """InputError unless a mask spans its image's physical extent (within one mask voxel)."""
    mask_extent = np.asarray(mask_vol.shape) * mask_vol.spacing
    image_extent = np.asarray(image_vol.shape) * image_vol.spacing
    if np.any(np.abs(mask_extent - image_extent) > mask_vol.spacing + 1e-6):
        raise InputError(mask_vol.path,
                         f"mask covers {np.round(mask_extent, 2).tolist()} µm (z,y,x) but its "
                         f"image {image_vol.path} covers {np.round(image_extent, 2).tolist()} µm.",
                         "use the mask made for this image, or fix its spacing metadata.")
