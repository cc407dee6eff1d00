"""Rules init_aligned / init_extra / init_fixed_on_moving: an empty OME-Zarr image group.

Slab jobs fill level 0 in place; the pyramid rule fills the other levels.
"""
from snakestream.io.atomic import atomic_path
from snakestream.io.ngff import create_image
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        create_image(tmp, p.shape, p.dtype, p.chunks, p.spacing, origin=p.origin,
                     levels=p.levels, name=p.name, attrs=dict(p.attrs),
                     zarr_format=p.zarr_format, shard_chunks=p.shard_chunks)
    print(f"created {snakemake.output[0]} shape {p.shape} dtype {p.dtype} levels {p.levels}")  # noqa: F821
