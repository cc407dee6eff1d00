"""Rule gather_slab: blend the blocks touching one z slab into deform.zarr (linear blending)."""
import os
import resource
import time

from snakestream.grid.blocks import block_relpath, read_table
from snakestream.io.atomic import write_json
from snakestream.io.zarr_store import open_zarr_array
from snakestream.smk.runtime import rule_context
from snakestream.fields.stitch import block_loader, write_field_slab

with rule_context(snakemake):  # noqa: F821
    p, slab = snakemake.params, int(snakemake.wildcards.slab)  # noqa: F821
    t0 = time.perf_counter()
    table = read_table(snakemake.input.table)  # noqa: F821
    table = table[table.aligned.astype(bool)]
    out = open_zarr_array(snakemake.input.field, mode="r+")  # noqa: F821
    spacing = [s / f for s, f in zip(out.attrs["spacing"], p.step)]  # the fixed grid's
    path_of = lambda bid: os.path.join(p.blocks_dir, block_relpath(bid))  # noqa: E731
    n, jacobian = write_field_slab(out, table, slab, spacing, p.overlap, block_loader(path_of),
                                   step=p.step)
    stats = {"slab": slab, "chunks": n, "seconds": round(time.perf_counter() - t0, 3),
             "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
             "jacobian": jacobian}
    print({k: v for k, v in stats.items() if k != "jacobian"})
    write_json(snakemake.output[0], stats)  # noqa: F821
