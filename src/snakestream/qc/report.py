"""A standalone HTML QC report — one file, no server, no external JS or CSS.

Sections: full-resolution orthogonal slices per stage (red/green overlay, checkerboard,
absolute difference, |displacement| and det J maps, mask outlines) with a slider per
axis; NCC per stage; the global stage's steps; the block map over a fixed slice and a
sortable per-block table; Jacobian statistics; landmark TRE; provenance.

The slices are embedded as grayscale PNGs only (the fixed tile and the moving tile at
each stage, uint8 after one robust intensity window per image; field maps as uint8
codes); the page composes the renderings on canvases in JavaScript. The page honours a
URL fragment, e.g. ``report.html#axis=y&slice=3&sort=-seconds``: slider position
``slice`` (0-based stop) on ``axis``, and the block table sorted by a column as if
its header were clicked (``-``: twice, descending); each canvas carries a
``data-digest`` of its pixels. When every canvas is drawn ``<body>`` gets ``data-ready="1"``.

Typical use (scripts/report.py does this with the run's files)::

    html = render_report(fix_vol, mov_vol, affine, field=field, title="run")
"""

import base64
import html
import json

import numpy as np

from snakestream.qc import slices as sl
from snakestream.qc.block_qc import metric_improvement, status_counts
from snakestream.qc.overlay import png_bytes

STATUS_COLOUR = {"below threshold": "#9a9a9a", "skipped": "#f0a030", "fallback": "#e4572e"}
CHECKER_TILES = 8  # checkerboard squares along a tile's longest side
FORMATS = {"um": "{:.3f}", "ncc": "{:.3f}", "s": "{:.1f}", "mb": "{:.0f}", "gain": "{:.3f}",
           "det": "{:.3f}", "sd": "{:.4f}"}


# ---------------------------------------------------------------- small pieces


def fmt(value, kind):
    """A number rounded to what it means: ``kind`` one of :data:`FORMATS` (µm to 0.001,
    NCC and metric gains to 3 decimals, seconds to 0.1, MB whole); blank for None/NaN."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    try:
        return FORMATS[kind].format(float(value))
    except (TypeError, ValueError):
        return str(value)


def b64png(image):
    """Base64 text of a 2-D uint8 image as PNG."""
    return base64.b64encode(png_bytes(np.ascontiguousarray(image))).decode()


def table_html(rows, header, *, table_id=None, sortable=False):
    """An HTML table from row tuples; ``sortable`` makes a header click sort it."""
    attrs = (f' id="{html.escape(table_id)}"' if table_id else "") + \
        (' class="sortable"' if sortable else "")
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def colour_bar(stops, low, high, label, *, width=220):
    """Horizontal CSS colour bar from ``stops`` (CSS colours, low to high) with end labels."""
    grad = ",".join(stops)
    return (f'<div class="cbar"><span>{html.escape(low)}</span><span class="bar" '
            f'style="width:{width}px;background:linear-gradient(to right,{grad})"></span>'
            f'<span>{html.escape(high)}</span> <i>{html.escape(label)}</i></div>')


def svg_histogram(counts, edges, width=420, height=150, label="log det J"):
    """Bar chart of a histogram (log10 counts) as SVG, with axis labels."""
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
            f'<text x="{width / 2 - 60}" y="{height - 4}">{label} (bar height: log10 count)'
            f'</text><text x="{width - 30}" y="{height - 4}">{edges[-1]:.2f}</text></svg>')


# ---------------------------------------------------------------- the slice viewer


def _nice_ceiling(value):
    """A round number ≥ value (1, 2 or 5 times a power of ten); 1 for value ≤ 0."""
    if not value > 0:
        return 1.0
    p = 10 ** np.floor(np.log10(value))
    return float(next(m * p for m in (1, 2, 5, 10) if m * p >= value))


def field_codes(views):
    """uint8 codes of the field maps, shared by every tile, and their scales.

    |d| is 0..255 for 0..``dmax`` µm; det J is 1..255 for log det J in
    [-``logj``, +``logj``] and 0 where det J ≤ 0 (folded).

    Returns
    -------
    dict ``{"dmax": float, "logj": float}`` (empty without a field).
    """
    tiles = [t for entries in views.values() for _, t in entries if t["dmag"] is not None]
    if not tiles:
        return {}
    dmax = _nice_ceiling(max(float(t["dmag"].max()) for t in tiles))
    logs = np.concatenate([np.log(t["detj"][t["detj"] > 0]).ravel() for t in tiles])
    spread = float(np.percentile(np.abs(logs), 99.9)) if logs.size else 0.0
    return {"dmax": dmax, "logj": round(max(spread, 0.05), 3)}


def _detj_code(det, logj):
    code = np.zeros(det.shape, np.uint8)
    ok = det > 0
    code[ok] = np.round(1 + 254 * (np.clip(np.log(det[ok]), -logj, logj) + logj) / (2 * logj))
    return code


def encode_views(views, spacing, *, stages_label=sl.STAGE_LABELS):
    """The viewer's data: per axis and slider stop, base64 grayscale PNGs and metadata.

    Parameters
    ----------
    views : dict
        :func:`snakestream.qc.slices.read_slices` result.
    spacing : (3,) float
        Fixed voxel size, µm, z, y, x.

    Returns
    -------
    JSON-able dict (see the page's script for its use).
    """
    tiles = [t for entries in views.values() for _, t in entries]
    stages = list(tiles[0]["stages"])
    fix_win = sl.intensity_window([t["fixed"] for t in tiles])
    mov_win = sl.intensity_window([t["stages"][s] for t in tiles for s in stages])
    scales = field_codes(views)
    data = {"stages": stages, "labels": {s: stages_label[s] for s in stages},
            "spacing": [float(s) for s in spacing], "windows": {"fixed": fix_win,
                                                               "moving": mov_win},
            "field": scales, "axes": {}}
    for axis, name in enumerate(sl.AXES):
        others = [a for a in range(3) if a != axis]
        stops = []
        for index, t in views[name]:
            png = {"fixed": b64png(sl.to_uint8(t["fixed"], fix_win))}
            png.update({s: b64png(sl.to_uint8(t["stages"][s], mov_win)) for s in stages})
            if t["fixed_outline"] is not None:
                png["fixed_outline"] = b64png(t["fixed_outline"].astype(np.uint8) * 255)
            for s, o in (t["moving_outline"] or {}).items():
                png[f"outline_{s}"] = b64png(o.astype(np.uint8) * 255)
            if t["dmag"] is not None:
                png["dmag"] = b64png(sl.to_uint8(t["dmag"], (0.0, scales["dmax"])))
                png["detj"] = b64png(_detj_code(t["detj"], scales["logj"]))
            stops.append({"index": int(index), "png": png, "size": list(t["fixed"].shape)})
        data["axes"][name] = {"rows": sl.AXES[others[0]], "cols": sl.AXES[others[1]],
                              "rowSpacing": float(spacing[others[0]]),
                              "colSpacing": float(spacing[others[1]]),
                              "stops": stops}
    return data


def viewer_html(data, shape, tile_starts):
    """The slice viewer: one panel per axis with a slider, canvases the script fills.

    Parameters
    ----------
    data : dict
        :func:`encode_views` result.
    shape : (3,) int
        Fixed grid shape, z, y, x (for the slice captions).
    tile_starts : dict
        ``{axis name: (row start, col start)}`` of the shown tiles, voxels.
    """
    for axis, name in enumerate(sl.AXES):
        data["axes"][name]["n"] = int(shape[axis])
        data["axes"][name]["tileStart"] = [int(v) for v in tile_starts[name]]
    rows = "".join(f"<th>{html.escape(data['labels'][s])}</th>" for s in data["stages"])
    panels = []
    for name in sl.AXES:
        stops = data["axes"][name]["stops"]
        panels.append(
            f'<div class="axis" id="axis-{name}"><h3>{name} slices: <span class="cap"></span></h3>'
            f'<input type="range" min="0" max="{len(stops) - 1}" value="{len(stops) // 2}" '
            f'class="slider" data-axis="{name}"> <span class="stop"></span>'
            f'<table class="views"><thead><tr><th></th>{rows}</tr></thead><tbody>'
            + "".join(f'<tr><th>{label}</th>' + "".join(
                f'<td><canvas data-axis="{name}" data-mode="{mode}" data-stage="{s}"></canvas></td>'
                for s in data["stages"]) + "</tr>"
                for mode, label in (("overlay", "overlay<br>fixed red, moving green"),
                                    ("checker", "checkerboard<br>fixed / moving"),
                                    ("diff", "|fixed − moving|")))
            + '</tbody></table><div class="maps">'
            + f'<figure><canvas data-axis="{name}" data-mode="fixed"></canvas>'
            f'<figcaption>fixed (mask outline cyan, moving mask magenta)</figcaption></figure>'
            + ("" if not data["field"] else
               f'<figure><canvas data-axis="{name}" data-mode="dmag"></canvas>'
               f'<figcaption>|displacement| of the field</figcaption></figure>'
               f'<figure><canvas data-axis="{name}" data-mode="detj"></canvas>'
               f'<figcaption>det J of the field (black: folded, det ≤ 0)</figcaption></figure>')
            + "</div></div>")
    bars = ""
    if data["field"]:
        f = data["field"]
        bars = (colour_bar(["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"], "0",
                           f"{f['dmax']:g} µm", "|displacement|")
                + colour_bar(["#3b4cc0", "#ffffff", "#b40426"],
                             f"{np.exp(-f['logj']):.3f}", f"{np.exp(f['logj']):.3f}",
                             "det J (log scale, white = 1)"))
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return ("<p>Full-resolution tiles of the shown slices; drag a slider to move. Intensity "
            f"windows (1st–99.5th percentile of the shown tiles): fixed "
            f"{data['windows']['fixed'][0]:.4g}–{data['windows']['fixed'][1]:.4g}, moving "
            f"{data['windows']['moving'][0]:.4g}–{data['windows']['moving'][1]:.4g}.</p>"
            + bars + "".join(panels)
            + f'<script type="application/json" id="slice-data">{payload}</script>')


# ---------------------------------------------------------------- blocks


def display_status(qc, table):
    """Per block, the status the report prints: 'below threshold' for blocks the table
    does not align (qc.tsv's 'skipped' rows without a job), else qc.tsv's status."""
    aligned = table.set_index("id")["aligned"].astype(bool)
    status = qc.set_index("id")["status"].astype(str)
    below = ~aligned.reindex(status.index).fillna(False).astype(bool)
    return status.where(~below, "below threshold")


def block_rows(table, qc):
    """The per-block table: id, status, reason, metric gain, iterations, s, peak MB."""
    q = qc.set_index("id")
    gain = metric_improvement(q)
    status = display_status(qc, table)
    iters = [c for c in q.columns if c.endswith("_iterations")]
    total_iters = q[iters].sum(axis=1, min_count=1) if iters else None
    reason = q["reason"].fillna("").astype(str) if "reason" in q else None
    rows = []
    for bid in q.index:
        it = None if total_iters is None else total_iters.get(bid)
        aligned = status[bid] in ("ok", "fallback")
        rows.append((bid, status[bid], "" if reason is None else reason[bid],
                     fmt(gain.get(bid), "gain") if aligned else "",
                     "" if it is None or not np.isfinite(it) else int(it),
                     fmt(q.seconds.get(bid), "s"), fmt(q.peak_mem_mb.get(bid), "mb")))
    return rows


def _gain_colour(g, top):
    t = 0.0 if top <= 0 else float(np.clip(g / top, 0, 1))
    return f"rgb({int(235 - 200 * t)},{int(245 - 85 * t)},{int(235 - 200 * t)})"


def block_map_svg(table, qc, backdrop, spacing, z_index, *, stride=1, fill_opacity=0.45):
    """One z row of blocks drawn over a fixed z slice, as SVG.

    Parameters
    ----------
    table, qc : DataFrame
        blocks/table.tsv and blocks/qc.tsv.
    backdrop : (Y', X') uint8
        The fixed z slice ``z_index``, every ``stride``-th voxel in y and x.
    spacing : (3,) float
        Fixed voxel size, µm, z, y, x (drawn with square µm).
    """
    q = qc.set_index("id")
    gain = metric_improvement(q)
    status = display_status(qc, table)
    top = float(gain[status == "ok"].max()) if (status == "ok").any() else 0.0
    sy, sx = float(spacing[1]) * stride, float(spacing[2]) * stride
    k = 360.0 / max(backdrop.shape[0] * sy, backdrop.shape[1] * sx)
    w, h = backdrop.shape[1] * sx * k, backdrop.shape[0] * sy * k
    rows = table[(table.cz0 <= z_index) & (table.cz1 > z_index)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
             f'viewBox="0 0 {w:.1f} {h:.1f}"><image href="data:image/png;base64,'
             f'{b64png(backdrop)}" width="{w:.1f}" height="{h:.1f}" '
             f'preserveAspectRatio="none" style="image-rendering:pixelated"/>']
    for _, r in rows.iterrows():
        st = status.get(r["id"], "below threshold")
        colour = STATUS_COLOUR.get(st) or _gain_colour(gain.get(r["id"], 0.0), top)
        x, y = r["cx0"] * spacing[2] * k, r["cy0"] * spacing[1] * k
        bw, bh = (r["cx1"] - r["cx0"]) * spacing[2] * k, (r["cy1"] - r["cy0"]) * spacing[1] * k
        tip = f"{r['id']}: {st}" + (f", metric gain {fmt(gain.get(r['id']), 'gain')}"
                                    if st in ("ok", "fallback") else "")
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                     f'fill="{colour}" fill-opacity="{fill_opacity}" stroke="{colour}" '
                     f'class="block" data-status="{html.escape(st)}">'
                     f'<title>{html.escape(tip)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts), top


def blocks_section(table, qc, backdrops, spacing):
    """Status counts, block maps over fixed z slices (a selector per block z row) with a
    colour bar, and the sortable per-block table.

    Parameters
    ----------
    backdrops : list of (z index, stride, (Y', X') uint8)
        One fixed z slice per shown block row.
    """
    counts = status_counts(display_status(qc, table).rename("status").to_frame())
    text = "<p>" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "</p>"
    maps, top = [], 0.0
    for n, (z, stride, image) in enumerate(backdrops):
        svg, top = block_map_svg(table, qc, image, spacing, z, stride=stride)
        maps.append(f'<div class="bmap" data-z="{z}"{"" if n == 0 else " hidden"}>{svg}</div>')
    options = "".join(f'<option value="{n}">z slice {z}</option>'
                      for n, (z, _, _) in enumerate(backdrops))
    legend = "".join(f'<span class="sw" style="background:{c}"></span>{html.escape(s)} '
                     for s, c in STATUS_COLOUR.items() if s in counts)
    text += (f'<p>block cores over the fixed slice <select id="bmap-select">{options}</select>'
             f' &nbsp; {legend}</p>'
             + colour_bar([_gain_colour(0, 1), _gain_colour(1, 1)], "0", fmt(top, "gain"),
                          "metric gain of ok blocks (metric before − after)")
             + "".join(maps))
    header = ["id", "status", "reason", "metric gain", "iterations", "seconds", "peak MB"]
    text += ("<p>Click a column header to sort.</p>"
             + table_html(block_rows(table, qc), header, table_id="blocks", sortable=True))
    return text


# ---------------------------------------------------------------- the page

SCRIPT = r"""
(function () {
  var body = document.body;
  window.addEventListener('error', function (e) {
    body.dataset.errors = (body.dataset.errors || '') + e.message + ';';
  });
  function frag() {
    var out = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var p = kv.split('='); if (p[0]) out[decodeURIComponent(p[0])] = decodeURIComponent(p[1] || '');
    });
    return out;
  }
  // ---- sortable tables
  function cellValue(tr, i) { return tr.children[i].textContent; }
  function sortTable(table, col, desc) {
    var heads = table.tHead.rows[0].cells, i = -1;
    for (var k = 0; k < heads.length; k++) if (heads[k].textContent === col) i = k;
    if (i < 0) return;
    var tb = table.tBodies[0], rows = Array.prototype.slice.call(tb.rows);
    var numeric = rows.every(function (r) { var v = cellValue(r, i); return v === '' || !isNaN(Number(v)); });
    rows.sort(function (a, b) {
      var x = cellValue(a, i), y = cellValue(b, i);
      if (numeric) {
        if (x === '' || y === '') return (x === '') - (y === '');  // blanks last
        x = Number(x); y = Number(y);
        return desc ? y - x : x - y;
      }
      return desc ? y.localeCompare(x) : x.localeCompare(y);
    });
    rows.forEach(function (r) { tb.appendChild(r); });
    table.dataset.sort = (desc ? '-' : '') + col;
  }
  document.querySelectorAll('table.sortable').forEach(function (t) {
    Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th) {
      th.addEventListener('click', function () {
        sortTable(t, th.textContent, t.dataset.sort === th.textContent);
      });
    });
  });
  var sel = document.getElementById('bmap-select');
  if (sel) sel.addEventListener('change', function () {
    document.querySelectorAll('.bmap').forEach(function (d, n) { d.hidden = String(n) !== sel.value; });
  });
  // ---- slice viewer
  var node = document.getElementById('slice-data');
  if (!node) { body.dataset.ready = '1'; return; }
  var D = JSON.parse(node.textContent), cache = {};
  function decode(b64) {
    if (cache[b64]) return cache[b64];
    cache[b64] = new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () {
        var c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
        var ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        var px = ctx.getImageData(0, 0, img.width, img.height).data, v = new Uint8Array(img.width * img.height);
        for (var i = 0; i < v.length; i++) v[i] = px[4 * i];
        resolve(v);
      };
      img.onerror = function () { reject(new Error('a slice PNG did not decode')); };
      img.src = 'data:image/png;base64,' + b64;
    });
    return cache[b64];
  }
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var COOLWARM = [[59, 76, 192], [255, 255, 255], [180, 4, 38]];
  function ramp(lut, t) {
    var x = Math.min(Math.max(t, 0), 1) * (lut.length - 1), i = Math.min(Math.floor(x), lut.length - 2), f = x - i;
    return [0, 1, 2].map(function (k) { return lut[i][k] + f * (lut[i + 1][k] - lut[i][k]); });
  }
  function niceLength(um) {
    var p = Math.pow(10, Math.floor(Math.log10(um))), best = p;
    [1, 2, 5, 10].forEach(function (m) { if (m * p <= um) best = m * p; });
    return best;
  }
  function compose(mode, img, rows, cols) {
    var out = new Uint8ClampedArray(rows * cols * 4), f = img.fixed, m = img.moving;
    var sq = Math.max(1, Math.round(Math.max(rows, cols) / %(checker)d));
    for (var r = 0; r < rows; r++) for (var c = 0; c < cols; c++) {
      var i = r * cols + c, o = 4 * i, rgb;
      if (mode === 'overlay') rgb = [f[i], m[i], 0];
      else if (mode === 'checker') { var g = ((Math.floor(r / sq) + Math.floor(c / sq)) %% 2) ? m[i] : f[i]; rgb = [g, g, g]; }
      else if (mode === 'diff') { var d = Math.abs(f[i] - m[i]); rgb = [d, d, d]; }
      else if (mode === 'fixed') rgb = [f[i], f[i], f[i]];
      else if (mode === 'dmag') rgb = ramp(VIRIDIS, img.dmag[i] / 255);
      else if (mode === 'detj') rgb = img.detj[i] === 0 ? [0, 0, 0] : ramp(COOLWARM, (img.detj[i] - 1) / 254);
      if (img.fixedOutline && img.fixedOutline[i] > 127 && mode !== 'dmag' && mode !== 'detj') rgb = [0, 255, 255];
      if (img.movOutline && img.movOutline[i] > 127 && mode !== 'fixed' && mode !== 'dmag' && mode !== 'detj') rgb = [255, 0, 255];
      out[o] = rgb[0]; out[o + 1] = rgb[1]; out[o + 2] = rgb[2]; out[o + 3] = 255;
    }
    return new ImageData(out, cols, rows);
  }
  function paint(canvas, data, A, rows, cols) {
    var pxPerUm = 300 / Math.max(rows * A.rowSpacing, cols * A.colSpacing);
    var w = Math.max(1, Math.round(cols * A.colSpacing * pxPerUm)), h = Math.max(1, Math.round(rows * A.rowSpacing * pxPerUm));
    var off = document.createElement('canvas'); off.width = cols; off.height = rows;
    off.getContext('2d').putImageData(data, 0, 0);
    canvas.width = w; canvas.height = h + 16;
    var ctx = canvas.getContext('2d');
    ctx.fillStyle = '#222'; ctx.fillRect(0, 0, w, h + 16);
    ctx.imageSmoothingEnabled = false; ctx.drawImage(off, 0, 0, w, h);
    var um = niceLength(cols * A.colSpacing / 4), len = um * pxPerUm;
    ctx.fillStyle = '#fff'; ctx.strokeStyle = '#000'; ctx.fillRect(w - len - 6, h - 8, len, 4);
    ctx.strokeRect(w - len - 6.5, h - 8.5, len + 1, 5);  // visible on white maps too
    ctx.font = '11px sans-serif'; ctx.lineWidth = 2; ctx.strokeText(um + ' µm', w - len - 6, h - 11);
    ctx.lineWidth = 1; ctx.fillText(um + ' µm', w - len - 6, h - 11);
    ctx.fillText(A.cols + ' →', w / 2 - 8, h + 12);
    ctx.save(); ctx.translate(10, h / 2 + 8); ctx.rotate(Math.PI / 2); ctx.fillText(A.rows + ' →', 0, 0); ctx.restore();
  }
  function digest(px) {  // FNV-1a of the drawn pixels: the tests compare slider stops by it
    var h = 2166136261;
    for (var i = 0; i < px.length; i++) { h ^= px[i]; h = Math.imul(h, 16777619) >>> 0; }
    return h.toString(16);
  }
  function show(name, pos) {
    var A = D.axes[name], stop = A.stops[pos], P = stop.png, rows = stop.size[0], cols = stop.size[1];
    var panel = document.getElementById('axis-' + name);
    panel.querySelector('.slider').value = pos;
    var sp = D.spacing['zyx'.indexOf(name)];
    panel.querySelector('.stop').textContent = 'slice ' + name + ' = ' + stop.index + ' of 0–' + (A.n - 1) +
      ' (' + (stop.index * sp).toFixed(2) + ' µm), stop ' + (pos + 1) + '/' + A.stops.length;
    panel.querySelector('.cap').textContent = A.rows + ' ' + A.tileStart[0] + '–' + (A.tileStart[0] + rows - 1) +
      ', ' + A.cols + ' ' + A.tileStart[1] + '–' + (A.tileStart[1] + cols - 1) + ' (voxels)';
    var keys = Object.keys(P);
    return Promise.all(keys.map(function (k) { return decode(P[k]); })).then(function (arrs) {
      var px = {}; keys.forEach(function (k, n) { px[k] = arrs[n]; });
      panel.querySelectorAll('canvas').forEach(function (cv) {
        var mode = cv.dataset.mode, st = cv.dataset.stage;
        var img = {fixed: px.fixed, moving: st ? px[st] : px.fixed, dmag: px.dmag, detj: px.detj,
                   fixedOutline: px.fixed_outline, movOutline: st ? px['outline_' + st] : null};
        var data = compose(mode, img, rows, cols);
        paint(cv, data, A, rows, cols);
        cv.dataset.digest = digest(data.data);
      });
      panel.dataset.shown = String(stop.index);
    });
  }
  var F = frag(), jobs = [];
  Object.keys(D.axes).forEach(function (name) {
    var A = D.axes[name], pos = Math.floor(A.stops.length / 2);
    if (F.axis === name && F.slice !== undefined) pos = Math.min(Math.max(parseInt(F.slice, 10) || 0, 0), A.stops.length - 1);
    var slider = document.querySelector('#axis-' + name + ' .slider');
    slider.addEventListener('input', function () { show(name, parseInt(slider.value, 10)); });
    jobs.push(show(name, pos));
  });
  if (F.sort) {  // as clicks on the header: once ascending, twice descending
    var t = document.getElementById('blocks'), col = F.sort.replace(/^-/, '');
    if (t) Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th) {
      if (th.textContent !== col) return;
      th.click(); if (F.sort.charAt(0) === '-') th.click();
    });
  }
  if (F.axis && document.getElementById('axis-' + F.axis)) document.getElementById('axis-' + F.axis).scrollIntoView();
  Promise.all(jobs).then(function () { body.dataset.ready = '1'; }, function (e) {
    body.dataset.errors = (body.dataset.errors || '') + e.message + ';'; throw e;
  });
})();
""" % {"checker": CHECKER_TILES}

STYLE = ("body{font-family:sans-serif;margin:24px;max-width:1500px}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
         "table.views td,table.views th{border:none;padding:2px;font-size:12px;"
         "font-weight:normal;text-align:left;vertical-align:top}"
         "table.sortable th{cursor:pointer;background:#eef}"
         "h2{margin-top:28px;border-bottom:1px solid #ddd}"
         ".cbar{margin:4px 0;font-size:12px}.cbar .bar{display:inline-block;height:12px;"
         "margin:0 6px;vertical-align:middle;border:1px solid #888}"
         ".maps figure{display:inline-block;margin:4px 12px 4px 0;font-size:12px}"
         ".sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;"
         "vertical-align:middle}pre{background:#f6f6f6;padding:8px;overflow:auto;"
         "max-height:400px}")


def page(title, sections):
    """Assemble the HTML page from (heading, html) sections, with the page's script."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}<script>{SCRIPT}</script></body></html>")


# ---------------------------------------------------------------- sections


def ncc_section(stats):
    """Table of :func:`snakestream.qc.slices.stage_ncc` per stage."""
    rows = [(sl.STAGE_LABELS[s], fmt(v["whole"], "ncc"), fmt(v["local_median"], "ncc"),
             fmt(v["local_p10"], "ncc"), v["windows"]) for s, v in stats.items()]
    return ("<p>Normalised cross-correlation of the fixed and the moving image on the shown "
            f"slices (whole: all their pixels, inside the fixed mask if any; local: "
            f"{sl.LOCAL_WINDOW}×{sl.LOCAL_WINDOW}-pixel windows).</p>"
            + table_html(rows, ["stage", "NCC whole", "NCC local median", "NCC local 10th pct",
                                "windows"]))


def global_section(steps):
    """The global stage's steps (global/qc.json ``steps``), rounded."""
    rows = [(s.get("step"), s.get("status"), fmt(s.get("metric_before"), "ncc"),
             fmt(s.get("metric_after"), "ncc"), fmt(s.get("ncc_before"), "ncc"),
             fmt(s.get("ncc_after"), "ncc"), s.get("iterations"), fmt(s.get("seconds"), "s"))
            for s in steps]
    return table_html(rows, ["step", "status", "metric before", "metric after",
                             "NCC before", "NCC after", "iterations", "seconds"])


def jacobian_section(stats):
    """Whole-field det J statistics (:func:`~snakestream.fields.jacobian.merge_jacobian_stats`)."""
    if stats is None:
        return "<p>no field</p>"
    rows = [(stats["n"], stats["folded"], fmt(stats["sdlogj"], "sd"), fmt(stats["min"], "det"),
             fmt(stats["max"], "det"))]
    return (table_html(rows, ["voxels", "folded (det J ≤ 0)", "SDlogJ", "min det J",
                              "max det J"])
            + svg_histogram(stats["hist"], stats["edges"]))


def landmarks_section(tre):
    """Landmark TRE per stage from qc/landmarks.tsv (a DataFrame), µm to 0.001."""
    rows = [(r["stage"], int(r["n"]), *(fmt(r[c], "um") for c in
                                       ("median_um", "p95_um", "mean_um", "max_um")))
            for _, r in tre.iterrows()]
    return table_html(rows, ["stage", "points", "median µm", "95th pct µm", "mean µm",
                             "max µm"])


def labels_section(summary, per_label):
    """Label scores from qc/label_scores.tsv and qc/labels.tsv (DataFrames), as RnR-ExM
    scores them: the summary, then the 20 labels with the lowest Dice."""
    s = summary.iloc[0]
    head = [(int(s["labels"]), fmt(s["dice_mean"], "ncc"), fmt(s["dice_p30"], "ncc"),
             fmt(s["hd95_mean_vox"], "s"),
             fmt(s["sdlogj"], "sd") if "sdlogj" in s else "—")]
    worst = per_label.sort_values("dice").head(20)
    rows = [(int(r["label"]), int(r["fixed_voxels"]), int(r["warped_voxels"]),
             fmt(r["dice"], "ncc"), fmt(r["hd95_vox"], "s")) for _, r in worst.iterrows()]
    return (table_html(head, ["labels scored", "mean Dice", "Dice 30th pct",
                              "mean HD95 (voxels)", "SDlogJ"])
            + "<h3>lowest Dice</h3>"
            + table_html(rows, ["label", "fixed voxels", "warped voxels", "Dice",
                                "HD95 (voxels)"]))


def provenance_section(*, config_text, versions, date, wall_times):
    """The config as run, library versions, the date and wall time per rule.

    Parameters
    ----------
    config_text : str
        The validated config (YAML).
    versions : dict
        ``{package: version}``.
    date : str
        When the report was made (UTC, ISO 8601).
    wall_times : list of (rule, jobs, total s, longest s, peak RSS MB)
    """
    return (f"<p>report made {html.escape(date)}</p>"
            + table_html(sorted(versions.items()), ["package", "version"])
            + "<h3>wall time per rule (benchmarks/)</h3>"
            + table_html([(r, n, fmt(t, "s"), fmt(m, "s"), fmt(mb, "mb"))
                          for r, n, t, m, mb in wall_times],
                         ["rule", "jobs", "total s", "longest job s", "peak RSS MB"])
            + f"<h3>config as run</h3><pre>{html.escape(config_text)}</pre>")


def render_report(fix_vol, mov_vol, affine, *, field=None, fix_mask=None, mov_mask=None,
                  global_steps=None, table=None, qc=None, jacobian=None, landmarks=None,
                  labels=None, provenance=None, title="snakestream report", count=9,
                  tile=256):
    """The whole report page as an HTML string.

    Parameters
    ----------
    fix_vol, mov_vol : snakestream.io.volumes.Volume
        Fixed and moving images (any Volume-like with shape, spacing, read(region)).
    affine : (4, 4) array
        Global fixed -> moving affine, µm.
    field : zarr array (Z, Y, X, 3), optional
        Stitched displacement field, µm, with ``attrs["spacing"]``.
    fix_mask, mov_mask : Volume, optional
        Masks in their image's frame (outlines on the slices).
    global_steps : list of dict, optional
        global/qc.json ``steps``.
    table, qc : DataFrame, optional
        blocks/table.tsv and blocks/qc.tsv.
    jacobian : dict, optional
        Merged whole-field det J statistics.
    landmarks : DataFrame, optional
        qc/landmarks.tsv (stage, n, median_um, p95_um, mean_um, max_um).
    labels : (DataFrame, DataFrame), optional
        qc/label_scores.tsv and qc/labels.tsv (:mod:`snakestream.qc.labels`).
    provenance : dict, optional
        Keyword arguments of :func:`provenance_section`.
    count, tile : int
        Slider stops per axis and longest tile side, voxels
        (:func:`snakestream.qc.slices.read_slices`).
    """
    views = sl.read_slices(fix_vol, mov_vol, affine, field=field, fix_mask=fix_mask,
                           mov_mask=mov_mask, count=count, tile=tile)
    starts = {name: tuple(sl.slice_region(fix_vol.shape, a, 0, tile=tile)[0][
        [b for b in range(3) if b != a]]) for a, name in enumerate(sl.AXES)}
    data = encode_views(views, fix_vol.spacing)
    sections = [("Slices: before / after global / after blocks",
                 viewer_html(data, fix_vol.shape, starts)),
                ("NCC per stage", ncc_section(sl.stage_ncc(views)))]
    if global_steps is not None:
        sections.append(("Global stage steps", global_section(global_steps)))
    if table is not None and qc is not None:
        sections.append(("Blocks", blocks_section(table, qc, block_backdrops(
            fix_vol, table, data["windows"]["fixed"]), fix_vol.spacing)))
    if field is not None:
        sections.append(("Jacobian determinant of the stitched field",
                         jacobian_section(jacobian)))
    if landmarks is not None:
        sections.append(("Landmark target registration error", landmarks_section(landmarks)))
    if labels is not None:
        sections.append(("Label scores (RnR-ExM)", labels_section(*labels)))
    if provenance is not None:
        sections.append(("Provenance", provenance_section(**provenance)))
    return page(title, sections)


def block_backdrops(fix_vol, table, window, *, rows=16, size=256):
    """Fixed z slices under the block map: one per block z row (at most ``rows``, evenly
    chosen), at the row's core centre, every ``stride``-th voxel so the longest side is at
    most ``size`` px. Returns [(z index, stride, (Y', X') uint8)]."""
    cores = table.groupby("iz")[["cz0", "cz1"]].first().sort_index()
    pick = sl.slice_positions(len(cores), rows) if len(cores) > rows else range(len(cores))
    stride = max(1, int(np.ceil(max(fix_vol.shape[1:]) / size)))
    out = []
    for k in pick:
        z = int((cores.iloc[k].cz0 + cores.iloc[k].cz1 - 1) // 2)
        plane = fix_vol.read((slice(z, z + 1), slice(0, fix_vol.shape[1]),
                               slice(0, fix_vol.shape[2])))[0, ::stride, ::stride]
        out.append((z, stride, sl.to_uint8(plane, window)))
    return out
