"""Rule global_align: whole-image rigid/affine alignment -> global/affine.mat, qc.json, overlay.png."""
import json

import numpy as np

from snakestream.register.global_stage import downsample_volume, global_align
from snakestream.io.atomic import atomic_path
from snakestream.qc.overlay import affine_overlay, write_png
from snakestream.grid.inputs import open_image, open_mask
from snakestream.smk.runtime import rule_context

OVERLAY_PIXELS = 512  # about this many pixels along the longest axis of the overlay views


def overlay_spacing(vol):
    """µm per overlay voxel: the longest physical side over OVERLAY_PIXELS (native if finer)."""
    return float((np.asarray(vol.shape) * vol.spacing).max()) / OVERLAY_PIXELS


with rule_context(snakemake, threads=snakemake.params.itk_threads):  # noqa: F821
    p = snakemake.params  # noqa: F821
    fix, mov = open_image(p.fixed), open_image(p.moving)
    affine, qc = global_align(p.steps, fix, mov, open_mask(p.fixed, fix), open_mask(p.moving, mov),
                              threads=p.itk_threads, log=lambda m: print(m, flush=True))
    print("global affine (fixed -> moving, µm, z y x):\n", np.array2string(affine, precision=5))
    with atomic_path(snakemake.output.affine) as tmp:  # noqa: F821
        np.savetxt(tmp, affine)
    with atomic_path(snakemake.output.qc) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            json.dump({"affine": affine.tolist(), "steps": qc}, fh, indent=1)
    spacing = overlay_spacing(fix)
    small_fix, small_mov = (downsample_volume(vol, spacing, purpose="global overlay", log=print)
                            for vol in (fix, mov))
    write_png(snakemake.output.overlay,  # noqa: F821
              affine_overlay(small_fix, small_mov, [np.eye(4), affine],
                             ["BEFORE (IDENTITY)", "AFTER GLOBAL AFFINE"]))
