"""Rule block_table: the layout's block grid, with the fixed mask's foreground -> table.tsv.

The grid and foreground fractions are the ones the workflow used at parse time to
decide which blocks are jobs (same function, same cache).
"""
from snakestream.grid.blocks import write_table
from snakestream.grid.inputs import open_image
from snakestream.grid.layout import fixed_block_grid
from snakestream.io.atomic import atomic_path
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    fix = open_image(p.fixed)
    grid = fixed_block_grid(fix, p.fixed, blocksize=p.blocksize, overlap=p.overlap,
                            threshold=p.threshold, cache_dir=p.cache, log=print)
    table = grid.table()
    print(f"{len(table)} blocks, {int(table.aligned.sum())} to align")
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        write_table(table, tmp)
