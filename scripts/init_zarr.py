"""Rules init_deform / init_inverse: create an empty chunked (Z, Y, X, 3) field store.

Slab jobs then fill it in place, each writing only its own chunks.
"""
from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import create_zarr
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    shape, chunks = list(p.shape), list(p.chunks)
    inner = None if p.shard_chunks is None else list(p.shard_chunks)
    if p.vector:
        shape, chunks = shape + [3], chunks + [3]
        inner = None if inner is None else inner + [3]
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        create_zarr(tmp, shape, p.dtype, chunks, p.spacing, attrs=dict(p.attrs), origin=p.origin,
                    zarr_format=p.zarr_format, shard_chunks=inner)
    print(f"created {snakemake.output[0]} shape {shape} "  # noqa: F821
          f"{'shards' if inner else 'chunks'} {chunks} dtype {p.dtype}")  # noqa: F821
