"""Checkpoint block_table: blocks from blocksize and overlap, with foreground -> table.tsv."""
import numpy as np

from snakestream.blocks import build_table, write_table
from snakestream.crops import read_on_grid
from snakestream.io import atomic_path
from snakestream.runtime import open_image, open_mask, rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    fix = open_image(p.fixed)
    mask = open_mask(p.fixed, fix)

    def foreground(core):
        start = [s.start for s in core]
        shape = [s.stop - s.start for s in core]
        return float(np.mean(read_on_grid(mask, start, shape, fix.spacing) > 0))

    table = build_table(fix.shape, p.blocksize, p.overlap,
                        None if mask is None else foreground, p.threshold)
    print(f"{len(table)} blocks, {int(table.aligned.sum())} to align")
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        write_table(table, tmp)
