"""Rule challenge_export: the total transform as the RnR-ExM challenge's submission."""
import numpy as np

from snakestream.fields.challenge import write_submission
from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import open_zarr_array
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, i = snakemake.params, snakemake.input  # noqa: F821
    field = open_zarr_array(i.field) if "field" in i.keys() else None
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        largest = write_submission(tmp, p.name, p.fixed_shape, p.fixed_spacing,
                                   p.moving_spacing, np.loadtxt(i.affine), field=field,
                                   slab_z=p.slab_z, fix_origin=p.fixed_origin,
                                   mov_origin=p.moving_origin)
    print(f"{p.name}: {tuple(p.fixed_shape) + (3,)} float16 voxel displacements, "
          f"largest {largest:.2f} voxels")
