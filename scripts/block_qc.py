"""Rules block_row_qc / block_qc: per-block status and QC numbers as a table.

For one grid row (``wildcards.bz``) it reads that row's block files; without the
wildcard it concatenates the row tables into blocks/qc.tsv.
"""
import os

import pandas as pd

from snakestream.blockfile import load_block
from snakestream.blocks import block_relpath, read_table
from snakestream.io import atomic_path
from snakestream.runtime import rule_context


def row_qc(table, blocks_dir):
    rows = []
    for _, row in table.iterrows():
        info = {"id": row["id"], "foreground": row["foreground"]}
        if not row["aligned"]:
            info.update(status="skipped", reason=row["reason"])
        else:
            _, qc, _ = load_block(os.path.join(blocks_dir, block_relpath(row["id"])))
            info.update(status=qc["status"], reason=qc.get("reason", ""),
                        seconds=qc.get("seconds"))
            for i, step in enumerate(qc.get("steps", [])):
                for key in ("metric_before", "metric_after", "iterations", "status"):
                    info[f"s{i}_{step['step']}_{key}"] = step.get(key)
        rows.append(info)
    return pd.DataFrame(rows)


with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    if "bz" in snakemake.wildcards.keys():  # noqa: F821
        table = read_table(snakemake.input.table)  # noqa: F821
        qc = row_qc(table[table.iz == int(snakemake.wildcards.bz)], p.blocks_dir)  # noqa: F821
    else:
        qc = pd.concat([pd.read_csv(f, sep="\t") for f in snakemake.input.rows],  # noqa: F821
                       ignore_index=True)
        counts = qc.status.value_counts().to_dict()
        print("blocks by status:", counts)
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        qc.to_csv(tmp, sep="\t", index=False)
