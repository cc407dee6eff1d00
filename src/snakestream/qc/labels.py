"""Label scores as the RnR-ExM challenge computes them: Dice, its 30th percentile, HD95.

The challenge (github.com/ebesier/rnr-exm, ``challenge_eval/utils.py``) scores a pair
by the labels of the fixed segmentation (0 is background) that also occur in the
moving segmentation: Dice of fixed == label against warped == label for each, their
mean, and the 95th-percentile symmetric surface distance (HD95) in voxels. A label
missing from the warped image gets the grid diagonal as its HD95, as there.

The volumes are read one z slab at a time: label sizes and overlaps are summed over
slabs, and HD95 reads each label's bounding box only. The challenge measures surface
distances on surfels (DeepMind's ``surface_distance``); here they are measured between
the centres of boundary voxels with a Euclidean distance transform, which agrees to
a fraction of a voxel.
"""

from collections import Counter

import numpy as np
from scipy import ndimage

__all__ = ["label_counts", "dice_scores", "hd95_voxels", "label_scores"]


def _slabs(shape, slab_z):
    for z0 in range(0, int(shape[0]), int(slab_z)):
        yield z0, min(z0 + int(slab_z), int(shape[0]))


def _grow_boxes(boxes, labels, z0):
    """Extend per-label bounding boxes (dict label -> [lo, hi]) with a slab's labels."""
    values, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape) + 1
    for value, box in zip(values, ndimage.find_objects(compact)):
        if value == 0 or box is None:
            continue
        lo = np.array([s.start for s in box]) + (z0, 0, 0)
        hi = np.array([s.stop for s in box]) + (z0, 0, 0)
        old = boxes.get(int(value))
        boxes[int(value)] = (lo, hi) if old is None else (np.minimum(old[0], lo),
                                                          np.maximum(old[1], hi))


def label_counts(fixed, warped, *, slab_z=32):
    """Sizes, overlaps and bounding boxes of every label, read slab by slab.

    Parameters
    ----------
    fixed, warped : array-like (Z, Y, X) of integer labels
        The fixed segmentation and the moving one warped onto the fixed grid
        (zarr arrays, :class:`~snakestream.io.volumes.Volume` reads or ndarrays).
    slab_z : int
        z thickness read at a time.

    Returns
    -------
    dict
        ``fixed``, ``warped``, ``both``: Counters label -> voxels (both: voxels
        where the two agree); ``boxes``: label -> (lo, hi) voxel box (z, y, x)
        covering the label in either image.
    """
    if tuple(fixed.shape) != tuple(warped.shape):
        raise ValueError(f"label grids differ: {tuple(fixed.shape)} and {tuple(warped.shape)}")
    counts = {"fixed": Counter(), "warped": Counter(), "both": Counter(), "boxes": {}}
    for z0, z1 in _slabs(fixed.shape, slab_z):
        f, w = np.asarray(fixed[z0:z1]), np.asarray(warped[z0:z1])
        for key, data in (("fixed", f), ("warped", w), ("both", f[f == w])):
            values, n = np.unique(data, return_counts=True)
            counts[key].update(dict(zip(values.tolist(), n.tolist())))
        _grow_boxes(counts["boxes"], f, z0)
        _grow_boxes(counts["boxes"], w, z0)
    for key in ("fixed", "warped", "both"):
        counts[key].pop(0, None)
    return counts


def dice_scores(counts, moving_labels):
    """Dice of every fixed label that the moving segmentation also has.

    Parameters
    ----------
    counts : dict
        From :func:`label_counts`.
    moving_labels : iterable of int
        Labels present in the (unwarped) moving segmentation.

    Returns
    -------
    dict label -> Dice in [0, 1], in label order.
    """
    present = set(int(v) for v in moving_labels)
    return {label: 2.0 * counts["both"][label] / (n + counts["warped"][label])
            for label, n in sorted(counts["fixed"].items()) if label in present}


def _surface(mask):
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95_voxels(a, b):
    """Symmetric 95th-percentile surface distance between two boolean masks, voxels.

    ``inf`` when either mask is empty.
    """
    if not a.any() or not b.any():
        return float("inf")
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb)[sa]
    to_a = ndimage.distance_transform_edt(~sa)[sb]
    return float(max(np.percentile(to_b, 95), np.percentile(to_a, 95)))


def _box_read(array, lo, hi):
    return np.asarray(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])


def label_scores(fixed, warped, moving_labels, *, slab_z=32):
    """Per-label Dice and HD95 and their summary, as the challenge scores a pair.

    Parameters
    ----------
    fixed, warped : array-like (Z, Y, X) of integer labels
        As in :func:`label_counts`.
    moving_labels : iterable of int
        Labels of the unwarped moving segmentation.
    slab_z : int
        z thickness read at a time.

    Returns
    -------
    rows : list of dict
        One per scored label: ``label``, ``fixed_voxels``, ``warped_voxels``,
        ``dice``, ``hd95_vox``.
    summary : dict
        ``labels`` (scored), ``dice_mean``, ``dice_p30`` (30th percentile over
        labels), ``hd95_mean_vox``.
    """
    counts = label_counts(fixed, warped, slab_z=slab_z)
    dice = dice_scores(counts, moving_labels)
    diagonal = float(np.sqrt(np.sum(np.asarray(fixed.shape, float) ** 2)))
    rows = []
    for label, score in dice.items():
        lo, hi = counts["boxes"][label]
        lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, fixed.shape)
        hd = hd95_voxels(_box_read(fixed, lo, hi) == label, _box_read(warped, lo, hi) == label)
        rows.append({"label": label, "fixed_voxels": counts["fixed"][label],
                     "warped_voxels": counts["warped"][label], "dice": score,
                     "hd95_vox": diagonal if np.isinf(hd) else hd})
    scores = np.array([r["dice"] for r in rows])
    hds = np.array([r["hd95_vox"] for r in rows])
    summary = {"labels": len(rows),
               "dice_mean": float(scores.mean()) if rows else float("nan"),
               "dice_p30": float(np.percentile(scores, 30)) if rows else float("nan"),
               "hd95_mean_vox": float(hds.mean()) if rows else float("nan")}
    return rows, summary
