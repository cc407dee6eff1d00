"""Rules warp_slab / warp_extra_slab: resample a moving-space volume through [affine, deform]
into one z slab of level 0 of an OME-Zarr image on the fixed grid."""
import resource
import time

import numpy as np

from snakestream.io.atomic import write_json
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.grid.inputs import open_image
from snakestream.smk.runtime import rule_context
from snakestream.fields.warp import warp_slab

with rule_context(snakemake):  # noqa: F821
    p, slab = snakemake.params, int(snakemake.wildcards.slab)  # noqa: F821
    t0 = time.perf_counter()
    mov = open_image(p.moving)
    affine = np.loadtxt(snakemake.input.affine)  # noqa: F821
    out = open_zarr_array(snakemake.input.image + "/0", mode="r+")  # noqa: F821
    field = open_zarr_array(snakemake.input.field) if p.use_field else None  # noqa: F821
    n = warp_slab(out, slab, np.asarray(out.attrs["spacing"]), affine, mov, field=field,
                  order=p.order, fix_origin=grid_origin(out.attrs))
    stats = {"slab": slab, "chunks": n, "seconds": round(time.perf_counter() - t0, 3),
             "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(stats)
    write_json(snakemake.output[0], stats)  # noqa: F821
