"""Rule inverse_slab: one z slab of inverse.zarr by fixed-point iteration of the forward field."""
import time

from snakestream.fields.inverse import write_inverse_slab
from snakestream.io.atomic import write_json
from snakestream.io.zarr_store import open_zarr_array
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    slab, t0 = int(snakemake.wildcards.slab), time.perf_counter()  # noqa: F821
    out = open_zarr_array(snakemake.input.inverse, mode="r+")  # noqa: F821
    n, residual = write_inverse_slab(out, open_zarr_array(snakemake.input.field), slab)  # noqa: F821
    stats = {"slab": slab, "chunks": n, "max_residual_um": residual,
             "seconds": round(time.perf_counter() - t0, 3)}
    print(stats)
    write_json(snakemake.output[0], stats)  # noqa: F821
