"""Rules init_deform / init_aligned: create an empty chunked Zarr on the fixed grid.

Slab jobs then fill it in place, each writing only its own chunks.
"""
import json

from snakestream.io import atomic_path, create_zarr
from snakestream.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    with open(snakemake.input.grid) as fh:  # noqa: F821
        grid = json.load(fh)
    shape, chunks = list(grid["shape"]), list(grid["chunks"])
    if p.vector:
        shape, chunks = shape + [3], chunks + [3]
    dtype = p.dtype or grid["moving_dtype"]
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        create_zarr(tmp, shape, dtype, chunks, grid["spacing"], attrs=dict(p.attrs))
    print(f"created {snakemake.output[0]} shape {shape} chunks {chunks} dtype {dtype}")  # noqa: F821
