"""Rule block_table: blocks from blocksize and overlap, with foreground -> table.tsv.

The foreground fractions are the ones the workflow used at parse time to decide
which blocks are jobs (same function, same cache).
"""
from snakestream.grid.blocks import build_table, write_table
from snakestream.io.atomic import atomic_path
from snakestream.grid.layout import cached_foreground
from snakestream.smk.runtime import open_image, open_mask, rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    fix = open_image(p.fixed)
    mask = open_mask(p.fixed, fix)
    fractions = None if mask is None else cached_foreground(mask, fix.shape, fix.spacing,
                                                            p.blocksize, p.cache)
    table = build_table(fix.shape, p.blocksize, p.overlap, fractions, p.threshold)
    print(f"{len(table)} blocks, {int(table.aligned.sum())} to align")
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        write_table(table, tmp)
