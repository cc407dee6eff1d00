"""report.html: slices per stage read tile by tile, rounded numbers, landmarks, and the
page itself in headless Chromium (no console errors, the slider moves the images, the
block table sorts)."""
import html as htmlmod
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter

import headless
from conftest import demo_config, fast_settings, snakemake, write_config
from snakestream.grid.geometry import translation
from snakestream.io.volumes import open_volume, write_volume
from snakestream.qc import slices as sl
from snakestream.qc.landmarks import read_stage_table
from snakestream.qc.report import render_report

SPACING = (0.8, 0.4, 0.4)
SHOTS = Path(tempfile.gettempdir()) / "snakestream-report-shots"


# ---------------------------------------------------------------- library, no browser


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A smooth random fixed image and the same image shifted by (1.6, -2.0, 1.2) µm
    as the moving one: the true affine is that translation."""
    root = tmp_path_factory.mktemp("report_pair")
    rng = np.random.default_rng(5)
    big = gaussian_filter(rng.random((40, 90, 90)), 2.0) * 1000
    shift = np.array([2, -5, 3])  # voxels of SPACING: 1.6, -2.0, 1.2 µm
    fix = big[4:36, 10:80, 10:80]
    mov = big[4 + shift[0]:36 + shift[0], 10 + shift[1]:80 + shift[1], 10 + shift[2]:80 + shift[2]]
    write_volume(root / "fix.zarr", fix.astype(np.float32), SPACING)
    write_volume(root / "mov.zarr", mov.astype(np.float32), SPACING)
    mask = np.zeros(fix.shape, np.uint8)
    mask[4:28, 10:60, 10:60] = 1
    write_volume(root / "mask.zarr", mask, SPACING)
    return {"fix": open_volume(root / "fix.zarr"), "mov": open_volume(root / "mov.zarr"),
            "mask": open_volume(root / "mask.zarr"),
            "affine": translation(-shift * np.array(SPACING)), "root": root}


class Recording:
    """A Volume that records the regions read from it."""

    def __init__(self, vol):
        self.vol, self.regions = vol, []
        self.shape, self.spacing, self.dtype = vol.shape, vol.spacing, vol.dtype

    def read(self, region=None):
        self.regions.append(region)
        return self.vol.read(region)


def test_slices_read_only_the_shown_tiles_of_the_fixed_image(pair):
    fix = Recording(pair["fix"])
    views = sl.read_slices(fix, pair["mov"], pair["affine"], count=5, tile=48)
    assert [len(views[a]) for a in "zyx"] == [5, 5, 5]
    for region in fix.regions:
        sizes = sorted(s.stop - s.start for s in region)
        assert sizes[0] == 1 and sizes[-1] <= 48, region  # one plane, one capped tile
    assert len(fix.regions) == 15


def test_ncc_per_stage_rises_with_the_true_affine(pair):
    views = sl.read_slices(pair["fix"], pair["mov"], pair["affine"], count=4, tile=64,
                           fix_mask=pair["mask"])
    stats = sl.stage_ncc(views)
    assert set(stats) == {"before", "global"}
    assert stats["global"]["whole"] > 0.99 > stats["before"]["whole"] + 0.1, stats
    assert stats["global"]["local_median"] > stats["before"]["local_median"], stats
    tile = views["z"][0][1]
    assert tile["fixed_outline"].any() and not tile["fixed_outline"].all()


def test_field_maps_on_a_linear_field_give_its_det_and_magnitude(pair, tmp_path):
    import zarr

    fix = pair["fix"]
    grad = np.diag([0.05, -0.02, 0.03])  # d(x) = G x: det J = prod(1 + diag)
    x = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(fix.shape, SPACING)],
                             indexing="ij"), axis=-1)
    field = zarr.open(str(tmp_path / "f.zarr"), mode="w", shape=fix.shape + (3,),
                      dtype="f4")
    field[:] = x @ grad.T
    field.attrs["spacing"] = list(SPACING)
    views = sl.read_slices(fix, pair["mov"], pair["affine"], field=field, count=3, tile=32)
    tile = views["y"][1][1]
    assert np.allclose(tile["detj"], np.prod(1 + np.diag(grad)), atol=1e-4)
    index = views["y"][1][0]
    start, shape = sl.slice_region(fix.shape, 1, index, tile=32)
    pts = np.stack(np.meshgrid(np.arange(start[0], start[0] + shape[0]) * SPACING[0],
                               [index * SPACING[1]],
                               np.arange(start[2], start[2] + shape[2]) * SPACING[2],
                               indexing="ij"), axis=-1)[:, 0]
    assert np.allclose(tile["dmag"], np.linalg.norm(pts @ grad.T, axis=-1), atol=1e-4)


def _text_outside_data(page):
    """The page without its embedded data (slice JSON, data: URIs, the script)."""
    page = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.S)
    page = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


def test_landmarks_table_and_numbers_are_rounded(pair, tmp_path):
    tsv = tmp_path / "landmarks.tsv"
    pd.DataFrame({"stage": ["before", "global affine", "blocks"], "n": [40, 40, 40],
                  "median_um": [3.14159265, 0.41234567, 0.1234567],
                  "p95_um": [5.5, 0.81234567, 0.2], "mean_um": [3.2, 0.45, 0.13],
                  "max_um": [7.0, 1.0, 0.3]}).to_csv(tsv, sep="\t", index=False)
    page = render_report(pair["fix"], pair["mov"], pair["affine"],
                         landmarks=pd.read_csv(tsv, sep="\t"), count=3, tile=32,
                         global_steps=[{"step": "affine", "status": "ok",
                                        "metric_before": -0.123456789, "ncc_after": 0.98765432}])
    text = _text_outside_data(page)
    assert "Landmark target registration error" in text
    assert "<td>3.142</td>" in text and "<td>0.412</td>" in text and "<td>0.812</td>" in text
    assert "<td>-0.123</td>" in text and "<td>0.988</td>" in text
    assert not re.search(r"\d\.\d{5,}", text), re.findall(r"\d\.\d{5,}", text)[:5]


# ---------------------------------------------------------------- the demo's page


@pytest.fixture(scope="module")
def demo_report(demo_data):
    """The demo (fast settings) run to its report."""
    root = demo_data("report", (24, 96, 96), seed=3)
    cfg = fast_settings(demo_config(root / "data", root / "out"))
    proc = snakemake(write_config(root / "config.yaml", cfg), root,
                     str(root / "out" / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = root / "out"
    print(f"demo report.html: {(out / 'report.html').stat().st_size / 1e6:.2f} MB")
    return out


def test_report_names_below_threshold_blocks_and_shows_provenance(demo_report):
    page = (demo_report / "report.html").read_text()
    text = _text_outside_data(page)
    qc = pd.read_csv(demo_report / "blocks" / "qc.tsv", sep="\t")
    table = pd.read_csv(demo_report / "blocks" / "table.tsv", sep="\t")
    below = int((~table.aligned.astype(bool)).sum())
    assert below > 0 and f"below threshold: {below}" in text
    assert "skipped:" not in text
    assert text.count('<tr><td>z0') == len(qc)  # one table row per block
    for key in ("snakestream", "numpy", "SimpleITK", "snakemake", "zarr", "global_align",
                "config as run", "blocksize"):
        assert key in text, key
    assert "SDlogJ" in text and "folded" in text and "NCC whole" in text
    assert not re.search(r"\d\.\d{5,}", text), re.findall(r"\d\.\d{5,}", text)[:5]


def _cells(dom, table_id, column):
    table = re.search(rf'<table id="{table_id}".*?</table>', dom, flags=re.S).group(0)
    head = [htmlmod.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S)
    i = head.index(column)
    return [re.findall(r"<td>(.*?)</td>", r)[i] for r in rows], \
        [re.findall(r"<td>(.*?)</td>", r)[0] for r in rows]


def _digests(dom, axis):
    return re.findall(rf'<canvas data-axis="{axis}"[^>]*data-digest="([0-9a-f]+)"', dom)


def test_page_in_chromium_slider_moves_images_and_table_sorts(demo_report, tmp_path):
    url = (demo_report / "report.html").as_uri()
    SHOTS.mkdir(exist_ok=True)
    stops = len(sl.slice_positions(24, 9))
    doms = {}
    for stop in (0, stops - 1):
        frag = f"#axis=z&slice={stop}"
        errors = headless.screenshot(url + frag, SHOTS / f"z_stop{stop}.png", tmp_path)
        assert errors == [], errors
        doms[stop], errors = headless.load(url + frag, tmp_path)
        assert errors == [], errors
        assert 'data-ready="1"' in doms[stop] and "data-errors" not in doms[stop]
    print(f"screenshots: {SHOTS}")
    first, last = _digests(doms[0], "z"), _digests(doms[stops - 1], "z")
    assert len(first) == len(last) == 9 + 3  # 3 renderings x 3 stages, fixed, |d|, det J
    assert all(a != b for a, b in zip(first, last)), (first, last)
    assert _digests(doms[0], "y") == _digests(doms[stops - 1], "y")  # other axes stay
    shown = [re.search(r'id="axis-z"[^>]*data-shown="(\d+)"', d).group(1) for d in doms.values()]
    assert shown == [str(sl.slice_positions(24, 9)[0]), str(sl.slice_positions(24, 9)[-1])]

    qc = pd.read_csv(demo_report / "blocks" / "qc.tsv", sep="\t")
    for frag, descending in (("#sort=seconds", False), ("#sort=-seconds", True)):
        dom, errors = headless.load(url + frag, tmp_path)
        assert errors == []
        seconds, ids = _cells(dom, "blocks", "seconds")
        timed = [float(s) for s in seconds if s]
        assert len(timed) > 3 and timed == sorted(timed, reverse=descending), timed
        assert sorted(ids) == sorted(qc.id)
        assert seconds[-1] == ""  # blocks without a job (below threshold) sort last


def test_console_check_catches_an_injected_error(demo_report, tmp_path):
    page = (demo_report / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("</body>", "<script>noSuchFunction();</script></body>"))
    _, errors = headless.load(broken.as_uri(), tmp_path)
    assert any("noSuchFunction" in e for e in errors), errors
    # and a failure inside the viewer's own asynchronous drawing
    broken.write_text(page.replace("function compose(mode, img, rows, cols) {",
                                   "function compose(mode, img, rows, cols) { img.nope.x;"))
    dom, errors = headless.load(broken.as_uri(), tmp_path)
    assert any("Uncaught" in e for e in errors) and 'data-ready="1"' not in dom, errors


# the demo run's landmark tables (qc/landmarks.tsv), which the report shows
def test_workflow_landmark_tables_match_demo_tre(demo_report):
    """qc/landmarks.tsv holds, per stage, the TRE scripts/demo_tre.py prints from truth.npz."""
    import importlib.util

    from snakestream.demo.scene import load_truth

    root = demo_report.parent
    spec = importlib.util.spec_from_file_location(
        "demo_tre", os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "demo_tre.py"))
    demo_tre = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_tre)
    want = demo_tre.results_tre(load_truth(root / "data" / "truth.npz"), root / "out")
    got = read_stage_table(root / "out" / "qc" / "landmarks.tsv")
    assert list(got) == ["before", "global", "blocks"] == list(want)
    for stage in want:
        assert got[stage]["n"] == want[stage]["n"]
        for key in ("median", "p95", "max"):
            assert got[stage][key] == pytest.approx(want[stage][key], abs=2e-6), (stage, key)
    assert got["blocks"]["median"] < got["global"]["median"] < got["before"]["median"]
    points = pd.read_csv(root / "out" / "qc" / "landmarks_points.tsv", sep="\t")
    assert len(points) == want["before"]["n"]
    assert points.error_global_um.median() == pytest.approx(got["global"]["median"], abs=2e-6)


def test_truth_npz_feeds_the_same_landmarks_rule(demo_report):
    root = demo_report.parent
    cfg = fast_settings(demo_config(root / "data", root / "out"))
    cfg = dict(cfg, landmarks=None, truth=str(root / "data" / "truth.npz"))
    path = write_config(root / "truth.yaml", cfg)
    before = (root / "out" / "qc" / "landmarks.tsv").read_text()
    proc = snakemake(path, root, str(root / "out" / "qc" / "landmarks.tsv"), "-R", "landmarks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "truth.npz" in (root / "out" / "logs" / "landmarks.log").read_text()  # ran on it
    assert (root / "out" / "qc" / "landmarks.tsv").read_text() == before
