"""Align one block: read its crops, run the block steps on top of the global affine.

The crops are read in the volumes' physical frames (origins included) and
registered in their local frames (voxel 0 of each volume at 0 µm,
:func:`~snakestream.register.align.in_local_frame`), so a block's own transforms
map fixed local points to fixed local points: block files, and the displacement
they stitch to, do not depend on the volumes' origins.
"""

import collections
import time

import numpy as np

from snakestream.grid import crops
from snakestream.grid.geometry import to_local
from snakestream.register.align import Image, StepResult, in_local_frame, run_steps
from snakestream.register.steps import in_local_frames
from snakestream.grid.blocks import block_seed, region_slices
from snakestream.io.volumes import require_finite


def global_step(affine):
    """The global affine (4x4, fixed -> moving, µm) as the StepResult a block starts from."""
    return StepResult("global", "affine", np.asarray(affine, float).ravel())


def _has_signal(array):
    return array.size > 0 and float(array.max()) > float(array.min())


def read_block_images(row, fix_vol, mov_vol, affine, *, margin=None,
                      fix_mask_vol=None, mov_mask_vol=None):
    """Fixed and moving crops of one block as :class:`Image` records.

    Parameters
    ----------
    row : mapping
        The block's row of the block table (``id`` and its region z0..x1).
    fix_vol, mov_vol : Volume
        Fixed and moving volumes (z, y, x, spacing in µm).
    affine : (4, 4) array
        Global fixed -> moving affine (µm); it places the moving crop.
    margin : sequence of 3 float, optional
        Extra moving crop on each side, µm (default: ``crops.default_margin``).
    fix_mask_vol, mov_mask_vol : Volume, optional
        Masks, read on the crops' grids.

    Returns
    -------
    fix, mov : Image or None
        The crops, placed in physical space (origin = the crop's first voxel,
        ``volume.origin + start * spacing``, µm).
    reason : str
        Why the block has nothing to align (no signal, no overlap, empty mask), in
        which case the images are None; ``""`` otherwise.
    """
    fix_slices = region_slices(row)
    start = np.array([s.start for s in fix_slices])
    shape = tuple(s.stop - s.start for s in fix_slices)
    fix_data = fix_vol.read(fix_slices)
    require_finite(fix_data, f"{fix_vol.path} block {row['id']}", what="voxels of its crop")
    if not _has_signal(fix_data):
        return None, None, "no signal in the fixed crop"
    if margin is None:
        margin = crops.default_margin(fix_slices, fix_vol.spacing)
    mov_slices = crops.moving_region(fix_slices, fix_vol, affine, mov_vol, margin)
    if mov_slices is None:
        return None, None, "the global affine maps this block outside the moving image"
    mov_data = mov_vol.read(mov_slices)
    require_finite(mov_data, f"{mov_vol.path} block {row['id']}", what="voxels of its crop")
    if not _has_signal(mov_data):
        return None, None, "no signal in the moving crop"
    mov_start = np.array([s.start for s in mov_slices])
    fix = Image(fix_data, fix_vol.spacing, fix_vol.origin + start * fix_vol.spacing)
    mov = Image(mov_data, mov_vol.spacing, mov_vol.origin + mov_start * mov_vol.spacing)
    if fix_mask_vol is not None:
        fix.mask = crops.read_on_grid(fix_mask_vol, start, shape, fix_vol.spacing) > 0
        if not fix.mask.any():
            return None, None, "fixed mask is empty in this block"
    if mov_mask_vol is not None:
        mov.mask = crops.read_on_grid(mov_mask_vol, mov_start, mov_data.shape,
                                      mov_vol.spacing) > 0
        if not mov.mask.any():
            return None, None, "moving mask is empty in this block"
    return fix, mov, ""


LocalBlock = collections.namedtuple("LocalBlock", "fix mov glob")


def local_block(fix, mov, affine, fix_origin, mov_origin):
    """A block's crops and global step in the volumes' local frames (voxel 0 at 0 µm).

    Parameters
    ----------
    fix, mov : Image
        Crops from :func:`read_block_images` (the volumes' physical frames).
    affine : (4, 4) array
        Global fixed -> moving affine in those frames, µm.
    fix_origin, mov_origin : (3,) array
        The volumes' origins, µm, z, y, x.

    Returns
    -------
    LocalBlock
        ``fix``, ``mov`` (:class:`Image`) and ``glob`` (the global affine as a
        :class:`StepResult`), all in local frames.
    """
    return LocalBlock(in_local_frame(fix, fix_origin), in_local_frame(mov, mov_origin),
                      global_step(to_local(affine, fix_origin, mov_origin)))


def block_status(step_qcs):
    """'ok' when every step succeeded, else 'fallback'."""
    return "ok" if all(q.get("status") == "ok" for q in step_qcs) else "fallback"


def align_block(row, steps, fix_vol, mov_vol, affine, *, margin=None,
                fix_mask_vol=None, mov_mask_vol=None, threads=1, log=print):
    """Register one block on top of the global affine.

    Parameters
    ----------
    row : mapping
        The block's row of the block table.
    steps : list of (name, dict)
        Normalised block steps.
    fix_vol, mov_vol : Volume
        Fixed and moving volumes (z, y, x, spacing in µm).
    affine : (4, 4) array
        Global fixed -> moving affine, z, y, x, µm (the volumes' frames, as in
        global/affine.mat).
    margin, fix_mask_vol, mov_mask_vol, threads, log
        As in :func:`read_block_images` (the crops) and
        :func:`~snakestream.register.align.run_steps` (threads, log).

    Returns
    -------
    results : list of StepResult
        The block's own transforms (global affine excluded), ready for ``save_block``;
        fixed local -> fixed local (voxel 0 of the fixed volume at 0 µm).
    qc : dict
        id, status ('ok', 'fallback', 'skipped'), reason, per-step QC and the seconds spent.
    """
    t0 = time.perf_counter()
    fix, mov, reason = read_block_images(row, fix_vol, mov_vol, affine, margin=margin,
                                         fix_mask_vol=fix_mask_vol, mov_mask_vol=mov_mask_vol)
    qc = {"id": row["id"], "steps": []}
    if fix is None:
        qc.update(status="skipped", reason=reason, seconds=round(time.perf_counter() - t0, 3))
        return [], qc
    qc["read_seconds"] = round(time.perf_counter() - t0, 3)
    local = local_block(fix, mov, affine, fix_vol.origin, mov_vol.origin)
    steps = in_local_frames(steps, fix_vol.origin, mov_vol.origin)
    results = run_steps(steps, local.fix, local.mov, static=[local.glob],
                        seed=block_seed(row["id"]), threads=threads, log=log)
    qc["steps"] = [r.qc for r in results]
    qc["status"] = block_status(qc["steps"])
    qc["reason"] = "; ".join(f"{q['step']}: {q['reason']}" for q in qc["steps"]
                             if q.get("status") != "ok")
    qc["seconds"] = round(time.perf_counter() - t0, 3)
    return results, qc
