"""Rules block_row_qc / block_qc: per-block status and QC numbers as a table.

For one grid row (``wildcards.bz``) it reads that row's block files; without the
wildcard it concatenates the row tables into blocks/qc.tsv.
"""
import pandas as pd

from snakestream.grid.blocks import read_table
from snakestream.io.atomic import atomic_path
from snakestream.qc.block_qc import qc_rows, status_counts
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    if "bz" in snakemake.wildcards.keys():  # noqa: F821
        table = read_table(snakemake.input.table)  # noqa: F821
        qc = qc_rows(table[table.iz == int(snakemake.wildcards.bz)], p.blocks_dir)  # noqa: F821
    else:
        qc = pd.concat([pd.read_csv(f, sep="\t") for f in snakemake.input.rows],  # noqa: F821
                       ignore_index=True)
        print("blocks by status:", status_counts(qc))
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        qc.to_csv(tmp, sep="\t", index=False)
