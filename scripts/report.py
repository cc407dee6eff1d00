"""Rule report: one standalone HTML page with the run's QC (overlays, blocks, Jacobian, TRE)."""
import json

import numpy as np
import pandas as pd

from snakestream.qc import report as rp
from snakestream.register.global_stage import downsample_volume
from snakestream.io.atomic import atomic_path
from snakestream.io.volumes import open_volume
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.fields.jacobian import merge_jacobian_stats
from snakestream.qc.metrics import stage_tre
from snakestream.qc.block_qc import status_counts
from snakestream.grid.inputs import open_image
from snakestream.smk.runtime import rule_context

MAX_PIXELS = 256  # longest axis of the report's overlay views


def low_res(vol, target):
    """Block-averaged copy of a volume at about ``target`` µm: (array, spacing).

    Read from the coarsest pyramid level that gives it; the log names the level.
    """
    image = downsample_volume(vol, target, purpose="report overview", log=print)
    return image.data, image.spacing


def tre_rows(truth_path, affine, field_path):
    truth = np.load(truth_path)
    field = open_zarr_array(field_path) if field_path else None
    stages = stage_tre(truth["landmarks_fixed"], truth["landmarks_moving"], affine, field,
                       None if field is None else field.attrs["spacing"],
                       field_origin=None if field is None else grid_origin(field.attrs))
    names = {"before": "before", "global": "global affine", "blocks": "blocks"}
    return [(names[stage], f"{t['median']:.3f}", f"{t['p95']:.3f}", t["n"])
            for stage, t in stages.items()]


def global_section(qc_path, overlay_path):
    with open(qc_path) as fh:
        steps = json.load(fh)["steps"]
    rows = [(s.get("step"), s.get("status"), s.get("metric_before"), s.get("metric_after"),
             s.get("ncc_before"), s.get("ncc_after"), s.get("iterations"), s.get("seconds"))
            for s in steps]
    table = rp.table_html(rows, ["step", "status", "metric before", "metric after",
                                 "NCC before", "NCC after", "iterations", "s"])
    with open(overlay_path, "rb") as fh:
        img = rp.png_tag(fh.read(), "global overlay")
    return table + "<p>fixed red, moving green, yellow where they agree</p>" + img


def blocks_section(table, qc):
    counts = status_counts(qc)
    bad = qc[qc.status == "fallback"][["id", "reason"]].head(50)
    text = "<p>" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + \
        " &nbsp; (green: metric improvement; grey: skipped; red: fallback)</p>"
    text += rp.svg_block_map(table, qc)
    if len(bad):
        text += "<h3>fallback blocks</h3>" + rp.table_html(bad.values.tolist(), ["id", "reason"])
    slow = qc.sort_values("seconds", ascending=False).head(5)[["id", "seconds", "peak_mem_mb"]]
    text += "<h3>slowest blocks</h3>" + rp.table_html(slow.values.tolist(),
                                                     ["id", "s", "peak MB"])
    return text


def jacobian_section(slab_paths):
    parts = []
    for path in slab_paths:
        with open(path) as fh:
            parts.append(json.load(fh).get("jacobian"))
    stats = merge_jacobian_stats(parts)
    if stats is None:
        return "<p>no field</p>"
    rows = [(stats["n"], stats["folded"], f"{stats['sdlogj']:.4f}", f"{stats['min']:.3f}",
             f"{stats['max']:.3f}")]
    return rp.table_html(rows, ["voxels", "folded (det ≤ 0)", "SDlogJ", "min det", "max det"]) + \
        rp.svg_histogram(stats["hist"], stats["edges"])


with rule_context(snakemake):  # noqa: F821
    p, i = snakemake.params, snakemake.input  # noqa: F821
    affine = np.loadtxt(i.affine)
    sections = [("Global stage", global_section(i.global_qc, i.overlay))]
    fix = open_image(p.fixed)
    target = float(max(np.asarray(fix.shape) * fix.spacing) / MAX_PIXELS)
    fix_low, spacing = low_res(fix, target)
    aligned_low, _ = low_res(open_volume(i.aligned, "0"), target)
    label = "AFTER BLOCKS" if p.blocks else "AFTER GLOBAL AFFINE (WARPED)"
    sections.append(("Aligned result", rp.png_tag(
        rp.after_blocks_overlay(fix_low, aligned_low, spacing, label), "aligned overlay")))
    if p.blocks:
        table = pd.read_csv(i.table, sep="\t")
        qc = pd.read_csv(i.qc, sep="\t")
        sections.append(("Blocks", blocks_section(table, qc)))
        sections.append(("Jacobian determinant of the stitched field",
                         jacobian_section(i.gather)))
    if p.truth:
        rows = tre_rows(p.truth, affine, i.field if p.blocks else None)
        sections.append(("Target registration error (known truth)",
                         rp.table_html(rows, ["stage", "median µm", "95th pct µm", "points"])))
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            fh.write(rp.page(f"snakestream report: {p.output}", sections))
