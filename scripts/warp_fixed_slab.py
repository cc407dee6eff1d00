"""Rule warp_fixed_slab: the fixed image resampled onto one z slab of the moving grid."""
import time

import numpy as np

from snakestream.fields.inverse import warp_fixed_slab
from snakestream.io.atomic import write_json
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.grid.inputs import open_image
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, slab, t0 = snakemake.params, int(snakemake.wildcards.slab), time.perf_counter()  # noqa: F821
    out = open_zarr_array(snakemake.input.image + "/0", mode="r+")  # noqa: F821
    inverse = open_zarr_array(snakemake.input.inverse) if p.use_field else None  # noqa: F821
    n = warp_fixed_slab(out, slab, np.asarray(out.attrs["spacing"]),
                        np.loadtxt(snakemake.input.affine), open_image(p.fixed),  # noqa: F821
                        inverse=inverse, order=p.order, mov_origin=grid_origin(out.attrs))
    write_json(snakemake.output[0], {"slab": slab, "chunks": n,
                       "seconds": round(time.perf_counter() - t0, 3)})  # noqa: F821
