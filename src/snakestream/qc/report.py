"""A standalone HTML QC report: overlays, block map, Jacobian, TRE — one file, no server.

Figures are PNG (overlays, base64-embedded) or inline SVG (histogram, block map),
so the page opens in any browser from a cluster's shared filesystem.
"""

import base64
import html

import numpy as np

from snakestream.qc.overlay import overlay_rgb, png_bytes, side_by_side
from snakestream.qc.block_qc import metric_improvement

STATUS_COLOUR = {"skipped": "#d0d0d0", "fallback": "#e4572e"}


def png_tag(rgb_or_bytes, alt):
    """<img> with an embedded PNG (array or PNG bytes)."""
    data = rgb_or_bytes if isinstance(rgb_or_bytes, bytes) else png_bytes(rgb_or_bytes)
    return (f'<img alt="{html.escape(alt)}" style="max-width:100%;image-rendering:pixelated" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def after_blocks_overlay(fix, aligned, spacing, label="AFTER BLOCKS"):
    """Overlay of the fixed image and the aligned image (same low-resolution grid)."""
    return side_by_side([overlay_rgb(fix, aligned, spacing)], [label])


def _green(value, top):
    g = 0.0 if top <= 0 else float(np.clip(value / top, 0, 1))
    return f"rgb({int(230 - 190 * g)},{int(240 - 60 * g)},{int(230 - 190 * g)})"


def svg_block_map(table, qc, cell=14):
    """Block grid, one small map per z row, coloured by metric improvement and status."""
    qc = qc.set_index("id")
    gain = metric_improvement(qc)
    top = float(gain[qc.status == "ok"].max()) if (qc.status == "ok").any() else 0.0
    ny, nx = int(table.iy.max()) + 1, int(table.ix.max()) + 1
    rows = sorted(table.iz.unique())
    width, height = len(rows) * (nx * cell + 20), ny * cell + 36
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">']
    for k, iz in enumerate(rows):
        x0 = k * (nx * cell + 20)
        parts.append(f'<text x="{x0}" y="11">z row {iz}</text>')
        for _, row in table[table.iz == iz].iterrows():
            status = qc.status.get(row["id"], "skipped")
            fill = STATUS_COLOUR.get(status) or _green(gain.get(row["id"], 0.0), top)
            tip = f"{row['id']} {status} gain {gain.get(row['id'], 0.0):.3g}"
            parts.append(f'<rect x="{x0 + row["ix"] * cell}" y="{16 + row["iy"] * cell}" '
                         f'width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                         f'<title>{html.escape(tip)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(counts, edges, width=420, height=150, label="log det J"):
    """Bar chart of a histogram (log scale counts) as SVG."""
    counts = np.asarray(counts, float)
    scaled = np.log10(counts + 1)
    top = scaled.max() if scaled.max() > 0 else 1.0
    bw = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{height - 20 - h:.1f}" width="{bw - 0.5:.1f}" '
        f'height="{h:.1f}" fill="#3a7bd5"><title>{edges[i]:.3f}..{edges[i + 1]:.3f}: '
        f'{int(c)}</title></rect>'
        for i, (c, h) in enumerate(zip(counts, scaled / top * (height - 30))))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="11">{bars}'
            f'<text x="0" y="{height - 4}">{edges[0]:.2f}</text>'
            f'<text x="{width / 2 - 30}" y="{height - 4}">{label} (log10 count)</text>'
            f'<text x="{width - 30}" y="{height - 4}">{edges[-1]:.2f}</text></svg>')


def table_html(rows, header):
    """A small HTML table from a list of row tuples."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title, sections):
    """Assemble the HTML page from (heading, html) sections."""
    style = ("body{font-family:sans-serif;margin:24px;max-width:1400px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "h2{margin-top:28px;border-bottom:1px solid #ddd}")
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")
