"""QC numbers: Jacobian determinant statistics, which-block lookup, report pieces."""
import numpy as np
import pandas as pd

from snakestream.grid.layout import build_table
from snakestream.grid.locate import blocks_at
from snakestream.fields.jacobian import jacobian_det, jacobian_stats, merge_jacobian_stats
from snakestream.qc.report import page, svg_block_map, svg_histogram


def test_jacobian_of_a_linear_field_is_exact():
    spacing = np.array([0.8, 0.4, 0.4])
    grad = np.array([[0.1, 0.02, 0.0], [0.0, -0.05, 0.03], [0.01, 0.0, 0.2]])
    x = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip((6, 7, 8), spacing)],
                             indexing="ij"), axis=-1)
    field = x @ grad.T
    det = jacobian_det(field, spacing)
    assert np.allclose(det, np.linalg.det(np.eye(3) + grad))


def test_folds_and_sdlogj_merge_like_the_whole():
    rng = np.random.default_rng(0)
    det = np.exp(rng.normal(0, 0.1, 10_000))
    det[:7] = -0.5
    whole = merge_jacobian_stats([jacobian_stats(det)])
    parts = merge_jacobian_stats([merge_jacobian_stats([jacobian_stats(det[:3000])]),
                                  jacobian_stats(det[3000:])])
    assert whole["folded"] == parts["folded"] == 7
    assert parts["sdlogj"] == np.float64(whole["sdlogj"]) or \
        abs(parts["sdlogj"] - whole["sdlogj"]) < 1e-12
    assert abs(whole["sdlogj"] - np.log(det[7:]).std()) < 1e-9


def test_blocks_at_finds_the_core_owner_first():
    table = build_table((30, 60, 60), (10, 20, 20), 0.5)
    hits = blocks_at(table, (15, 25, 41))
    assert hits.iloc[0]["id"] == "z0001_y0001_x0002" and hits.iloc[0]["core"]
    assert hits.core.sum() == 1 and len(hits) > 1


def test_report_pieces_render():
    table = build_table((20, 40, 40), (10, 20, 20), 0.5)
    qc = pd.DataFrame({"id": table.id, "status": ["ok"] * 6 + ["fallback", "skipped"],
                       "s0_affine_metric_before": -0.5, "s1_deform_metric_after": -0.9})
    svg = svg_block_map(table, qc)
    assert svg.count("<rect") == len(table) and "#e4572e" in svg
    hist = svg_histogram([0, 3, 10, 2], [-1, -0.5, 0, 0.5, 1])
    html = page("t", [("Blocks", svg), ("J", hist)])
    assert html.startswith("<!doctype html>") and html.count("<svg") == 2
