"""Per-block debugging: a block's crops and its transform as NRRD files for Fiji/napari.

NRRD files are written with pynrrd in C order, so the file's axes are x, y, z
(fastest first) with ``space directions`` = spacing and ``space origin`` = the
crop's physical position (the volume's origin included), as Fiji, napari and ITK
read them. Displacement
vectors in ``block_field.nrrd`` are in x, y, z order (ITK's convention).
"""

import numpy as np
import nrrd

from snakestream.fields.transform import displacement_on_grid
from snakestream.register.block_stage import local_block, read_block_images
from snakestream.register.similarity import resample
from snakestream.register.sitk_transforms import composite


def write_nrrd(path, array, spacing, origin, vector=False):
    """Write a z,y,x array (or z,y,x,3 vectors) with physical spacing and origin (µm)."""
    spacing, origin = np.asarray(spacing, float), np.asarray(origin, float)
    directions = np.diag(spacing[::-1]).tolist()
    header = {"space dimension": 3, "space units": ["microns"] * 3,
              "space origin": origin[::-1].tolist(), "encoding": "gzip"}
    if vector:  # C order: the last (vector) axis is the file's fastest, listed first
        header["kinds"] = ["vector", "domain", "domain", "domain"]
        header["space directions"] = np.array([[np.nan] * 3] + directions)
    else:
        header["kinds"] = ["domain"] * 3
        header["space directions"] = directions
    nrrd.write(str(path), np.ascontiguousarray(array), header, index_order="C")


def debug_block(out_dir, row, results, fix_vol, mov_vol, affine, *, margin=None):
    """Write fixed.nrrd, moving.nrrd (crop as the block saw it), moving_global.nrrd,
    moving_block.nrrd (after the block's transform) and block_field.nrrd to ``out_dir``.

    Parameters
    ----------
    out_dir : str
        Existing folder.
    row : mapping
        The block's row of the block table.
    results : list of StepResult
        The block's own transforms (from its block file).
    fix_vol, mov_vol : Volume
        Fixed and moving volumes.
    affine : (4, 4) array
        Global fixed -> moving affine, µm.
    margin : sequence of 3 float, optional
        Moving crop margin, µm, as the block job used.

    Returns
    -------
    list of str, the written paths.
    """
    fix, mov, reason = read_block_images(row, fix_vol, mov_vol, affine, margin=margin)
    if fix is None:
        raise ValueError(f"block {row['id']} has nothing to show: {reason}")
    local = local_block(fix, mov, affine, fix_vol.origin, mov_vol.origin)  # as registered
    glob = local.glob.to_sitk()
    own = [r.to_sitk() for r in results]
    files = {
        "fixed.nrrd": (fix.data, fix.spacing, fix.origin, False),
        "moving.nrrd": (mov.data, mov.spacing, mov.origin, False),
        "moving_global.nrrd": (resample(local.fix, local.mov, composite([glob])), fix.spacing,
                               fix.origin, False),
        "moving_block.nrrd": (resample(local.fix, local.mov, composite([glob] + own)),
                              fix.spacing, fix.origin, False),
    }
    field = displacement_on_grid(composite(own), (0, 0, 0), fix.data.shape, fix.spacing,
                                 origin=local.fix.origin)
    files["block_field.nrrd"] = (field[..., ::-1], fix.spacing, fix.origin, True)
    paths = []
    for name, (data, spacing, origin, vector) in files.items():
        path = f"{out_dir}/{name}"
        write_nrrd(path, data, spacing, origin, vector)
        paths.append(path)
    return paths
