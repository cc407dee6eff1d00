"""QC numbers: Jacobian determinant statistics, which-block lookup, report pieces."""
import numpy as np
import pandas as pd

from snakestream.grid.layout import build_table
from snakestream.grid.locate import blocks_at
from snakestream.fields.jacobian import jacobian_det, jacobian_stats, merge_jacobian_stats
from snakestream.qc.report import block_map_svg, blocks_section, page, svg_histogram


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
    table["aligned"] = [True] * 7 + [False]
    qc = pd.DataFrame({"id": table.id, "status": ["ok"] * 6 + ["fallback", "skipped"],
                       "reason": [""] * 6 + ["diverged", "foreground 0.1 < 0.3"],
                       "s0_affine_metric_before": -0.5, "s1_deform_metric_after": -0.9,
                       "s0_affine_iterations": 10, "s1_deform_iterations": 5,
                       "seconds": 1.23456, "peak_mem_mb": 300.4})
    backdrop = np.zeros((40, 40), np.uint8)
    svg, top = block_map_svg(table, qc, backdrop, (0.8, 0.4, 0.4), 12)
    in_row = ((table.cz0 <= 12) & (table.cz1 > 12)).sum()
    assert svg.count('class="block"') == in_row and abs(top - 0.4) < 1e-9
    section = blocks_section(table, qc, [(2, 1, backdrop), (12, 1, backdrop)], (0.8, 0.4, 0.4))
    assert "below threshold: 1" in section and "skipped" not in section
    assert "<td>15</td>" in section and "<td>1.2</td>" in section and "#e4572e" in section
    hist = svg_histogram([0, 3, 10, 2], [-1, -0.5, 0, 0.5, 1])
    html = page("t", [("Blocks", section), ("J", hist)])
    assert html.startswith("<!doctype html>") and html.count("<svg") == 3
