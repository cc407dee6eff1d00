"""The per-block QC table (blocks/qc.tsv): one row per block, from the block files."""

import os

import pandas as pd

from snakestream.fields.blockfile import load_block
from snakestream.grid.blocks import below_threshold_qc, block_relpath

REGION = ["z0", "z1", "y0", "y1", "x0", "x1"]
STEP_KEYS = ("metric_before", "metric_after", "iterations", "stop", "seconds", "status",
             "engine")


def block_row(row, qc):
    """One QC row: id, region, foreground, status, reason, seconds, peak memory, per-step numbers."""
    info = {"id": row["id"], **{k: int(row[k]) for k in REGION},
            "foreground": row["foreground"], "status": qc.get("status"),
            "reason": qc.get("reason", ""), "seconds": qc.get("seconds"),
            "peak_mem_mb": qc.get("peak_mem_mb")}
    for i, step in enumerate(qc.get("steps", [])):
        for key in STEP_KEYS:
            info[f"s{i}_{step['step']}_{key}"] = step.get(key)
    return info


def qc_rows(table, blocks_dir):
    """QC rows for the blocks of ``table``: aligned blocks from their files, the rest
    (below the foreground threshold, never jobs) as 'skipped' with the table's reason."""
    rows = []
    for _, row in table.iterrows():
        if row["aligned"]:
            _, qc, _ = load_block(os.path.join(blocks_dir, block_relpath(row["id"])))
        else:
            qc = below_threshold_qc(row)
        rows.append(block_row(row, qc))
    return pd.DataFrame(rows)


def status_counts(qc):
    """Blocks per status, e.g. {'ok': 10, 'fallback': 1, 'skipped': 53}."""
    return {k: int(v) for k, v in qc.status.value_counts().items()}


def metric_improvement(qc):
    """Per block: metric before the first step minus after the last (positive = better)."""
    before = [c for c in qc.columns if c.startswith("s0_") and c.endswith("_metric_before")]
    after = sorted(c for c in qc.columns if c.endswith("_metric_after"))
    if not before or not after:
        return pd.Series(0.0, index=qc.index)
    return (qc[before[0]] - qc[after[-1]]).fillna(0.0)
