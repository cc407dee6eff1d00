"""Checkpoint fixed_grid: the fixed image's shape, spacing and output chunking -> grid.json."""
import json

from snakestream.io import atomic_path
from snakestream.runtime import open_image, rule_context
from snakestream.stitch import n_slabs

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    fix, mov = open_image(p.fixed), open_image(p.moving)
    chunks = [min(c, n) for c, n in zip(p.chunks, fix.shape)]
    grid = {"shape": list(fix.shape), "spacing": fix.spacing.tolist(), "chunks": chunks,
            "n_slabs": n_slabs(fix.shape, chunks), "dtype": str(fix.dtype),
            "moving_shape": list(mov.shape), "moving_spacing": mov.spacing.tolist(),
            "moving_dtype": str(mov.dtype)}
    print(grid)
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            json.dump(grid, fh, indent=1)
