"""``mask: auto``: a foreground mask computed once from a low-resolution level, written as
OME-Zarr, and used like a given mask (block table, block jobs, global stage).

The volumes are a bright ellipsoid on dark noise, so the true foreground is known; the
workflow run uses the demo pair cut down to an ellipsoid of tissue, written as N5
pyramids as n5-spark / BigStitcher leave them.
"""
import numpy as np
import pytest

from conftest import DEMO_SPACING, demo_config, fast_settings, snakemake, write_config
from snakestream.config import auto_mask_path, load, validate
from snakestream.errors import InputError
from snakestream.grid.automask import compute_mask, otsu_threshold, write_mask
from snakestream.grid.blocks import read_table
from snakestream.grid.inputs import open_image, open_mask
from snakestream.grid.layout import Layout
from snakestream.io.volumes import open_volume, write_volume
from test_pyramids import write_n5_pyramid, write_ome_pyramid

SPACING = np.array([0.8, 0.4, 0.4])  # µm, z, y, x
SHAPE = (40, 128, 128)
CENTRE_UM = np.array([16.0, 22.0, 18.0])  # off-centre: some blocks hold no foreground
RADII_UM = np.array([12.0, 18.0, 13.0])
# the workflow run's fixed tissue is kept in this ellipsoid (µm, z, y, x)
TISSUE_CENTRE_UM, TISSUE_RADII_UM = np.array([12.8, 19.2, 12.0]), np.array([14.0, 22.0, 11.0])


def inside(points_um, centre=CENTRE_UM, radii=RADII_UM):
    """Whether points (..., 3) µm z,y,x lie in the ellipsoid."""
    return (((np.asarray(points_um) - centre) / radii) ** 2).sum(axis=-1) <= 1


def grid_points(shape, spacing):
    """Voxel centres (Z, Y, X, 3) µm of a grid whose voxel 0 is at the origin."""
    return np.moveaxis(np.indices(shape), 0, -1) * np.asarray(spacing)


def dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def ellipsoid():
    """uint16 (z, y, x): ~1000 inside the ellipsoid, ~100 outside, Gaussian noise."""
    rng = np.random.default_rng(3)
    fg = inside(grid_points(SHAPE, SPACING))
    image = np.where(fg, 1000.0, 100.0) + rng.normal(0, 60, SHAPE)
    return np.clip(image, 0, None).astype(np.uint16)


def read_ome_zarr(path):
    """(level-0 array, its scale z,y,x) of an OME-Zarr image, by ome-zarr-py's reader."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(path)))()))
    scale = next(t["scale"] for t in node.metadata["coordinateTransformations"][0]
                 if t["type"] == "scale")
    return np.asarray(node.data[0]), np.asarray(scale, float)


def test_otsu_separates_two_populations():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(100, 10, 5000), rng.normal(300, 40, 2000)])
    truth = np.arange(values.size) >= 5000
    t = otsu_threshold(values)
    assert 130 < t < 230, t
    assert np.mean((values > t) == truth) > 0.99


def test_mask_from_a_pyramid_level_matches_the_true_foreground(ellipsoid, tmp_path):
    path = write_ome_pyramid(tmp_path / "img.zarr", ellipsoid, SPACING)
    lines = []
    mask, spacing = compute_mask(open_volume(path, "s0"), spacing=1.6, smooth_um=1.6,
                                 log=lines.append)
    # 1.6 µm from 0.8 x 0.4 x 0.4: level s2 (2, 4, 4) as it is, not s0
    assert f"auto mask: {path} pyramid level 's2'" in lines[0], lines
    np.testing.assert_allclose(spacing, [1.6, 1.6, 1.6])
    out = tmp_path / "mask.ome.zarr"
    write_mask(str(out), mask, spacing)
    data, scale = read_ome_zarr(out)
    np.testing.assert_allclose(scale, spacing)
    np.testing.assert_array_equal(data, mask)
    truth = inside(grid_points(mask.shape, spacing))
    score = dice(data, truth)
    print(f"Dice of the auto mask (pyramid level s2, 1.6 µm) vs the ellipsoid: {score:.4f}")
    assert score > 0.9


def test_without_a_pyramid_the_full_level_is_block_averaged(ellipsoid, tmp_path):
    write_volume(str(tmp_path / "img.zarr"), ellipsoid, SPACING, dataset="0")
    lines = []
    mask, spacing = compute_mask(open_volume(tmp_path / "img.zarr", "0"), spacing=2.0,
                                 smooth_um=2.0, log=lines.append)
    assert "(no pyramid levels)" in lines[0] and "block mean [2, 5, 5]" in lines[0], lines
    np.testing.assert_allclose(spacing, [1.6, 2.0, 2.0])
    score = dice(mask, inside(grid_points(mask.shape, spacing)))
    print(f"Dice of the auto mask (block means of level 0, 1.6 x 2 x 2 µm): {score:.4f}")
    assert score > 0.9


def test_a_constant_image_has_no_foreground_to_find(tmp_path):
    write_volume(str(tmp_path / "flat.zarr"), np.full((8, 16, 16), 7, np.uint16), SPACING,
                 dataset="0")
    with pytest.raises(InputError, match="is constant at the auto mask's spacing"):
        compute_mask(open_volume(tmp_path / "flat.zarr", "0"), spacing=1.6, smooth_um=0)


def _config(path, out):
    volume = {"path": path, "dataset": "s0", "mask": "auto"}
    return validate({"fixed": dict(volume), "moving": dict(volume), "output": str(out),
                     "global_steps": [["affine", {"alignment_spacing": 1.6}]],
                     "blocks": {"blocksize": [10, 32, 32], "foreground_fraction": 0.3,
                                "steps": [["affine", {}]]}})


def test_layout_waits_for_the_auto_mask_then_selects_blocks_by_it(ellipsoid, tmp_path):
    path = write_ome_pyramid(tmp_path / "img.zarr", ellipsoid, SPACING)
    cfg = _config(path, tmp_path / "out")
    assert cfg["fixed"]["mask"]["path"] == auto_mask_path(str(tmp_path / "out"), "fixed")
    pending = Layout.from_config(cfg)
    assert pending.mask_pending and pending.blocks.aligned.all()
    with pytest.raises(InputError, match=r"\(mask: auto\) is not written yet"):
        open_mask(cfg["fixed"], open_image(cfg["fixed"]))
    mask, spacing = compute_mask(open_image(cfg["fixed"]), spacing=1.6, smooth_um=1.6)
    write_mask(cfg["fixed"]["mask"]["path"], mask, spacing)
    layout = Layout.from_config(cfg)
    assert not layout.mask_pending
    grid, fg = layout.blocks, inside(grid_points(SHAPE, SPACING))
    exact = np.array([fg[tuple(slice(a, b) for a, b in zip(lo, hi))].mean()
                      for lo, hi in zip(grid.core_lo, grid.core_hi)])
    assert not grid.aligned[exact < 0.05].any() and grid.aligned[exact > 0.6].all()
    assert 0 < grid.aligned.sum() < len(grid.ids)


# ---------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def auto_run(demo_data):
    """The demo pair, its fixed tissue kept in an ellipsoid only (dark noise elsewhere),
    both images as N5 pyramids, `mask: auto` for both, the whole workflow, fast settings."""
    root = demo_data("automask", (32, 96, 96), seed=4)
    data = root / "data"
    fix = open_volume(data / "fix.zarr", "s0").read()
    fg = inside(grid_points(fix.shape, DEMO_SPACING), TISSUE_CENTRE_UM, TISSUE_RADII_UM)
    rng = np.random.default_rng(5)
    dark = np.clip(rng.normal(100, 5, fix.shape), 0, None)
    fix = np.where(fg, fix, dark).astype(np.uint16)
    mov_vol = open_volume(data / "mov.h5", "/ch0")
    paths = {"fix": write_n5_pyramid(root / "fix.n5", fix, DEMO_SPACING),
             "mov": write_n5_pyramid(root / "mov.n5", mov_vol.read(), mov_vol.spacing)}
    cfg = fast_settings(demo_config(data, root / "out"))
    cfg["fixed"] = {"path": paths["fix"], "dataset": "s0", "mask": "auto"}
    cfg["moving"] = {"path": paths["mov"], "dataset": "s0", "mask": "auto"}
    cfg["auto_mask"] = {"spacing": 1.6, "smooth_um": 1.6}
    # the demo's tissue is sparse (nuclei in dim cytoplasm with dark gaps): a lower
    # fraction keeps the blocks well inside the ellipsoid
    cfg["blocks"]["foreground_fraction"] = 0.1
    proc = snakemake(write_config(root / "config.yaml", cfg), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "out": root / "out", "paths": paths, "fg": fg, "proc": proc}


def test_auto_masks_are_read_from_a_level_and_written_as_ome_zarr(auto_run):
    out, paths = auto_run["out"], auto_run["paths"]
    for role, key in (("fixed", "fix"), ("moving", "mov")):
        log = (out / "logs" / "auto_mask" / f"{role}.log").read_text()
        assert f"auto mask: {paths[key]} pyramid level 's2'" in log, log
        data, scale = read_ome_zarr(out / "masks" / f"{role}.ome.zarr")
        np.testing.assert_allclose(scale, [1.6, 1.6, 1.6])
        assert 0 < data.mean() < 1
    # the demo's tissue has gaps as dark as the background (a quarter of the ellipsoid's
    # voxels at 1.6 µm), so the fixed mask is checked for what it must not do: reach out
    data, scale = read_ome_zarr(out / "masks" / "fixed.ome.zarr")
    points = grid_points(data.shape, scale)
    outside = ~inside(points, TISSUE_CENTRE_UM, TISSUE_RADII_UM + scale)
    beyond = data[outside].sum() / data.sum()
    print(f"fixed auto mask: {data.mean():.3f} of its voxels, {beyond:.4f} of them more "
          f"than a voxel outside the tissue ellipsoid; Dice vs the ellipsoid "
          f"{dice(data, inside(points, TISSUE_CENTRE_UM, TISSUE_RADII_UM)):.3f}")
    assert beyond < 0.02


def test_blocks_outside_the_auto_mask_are_not_registered(auto_run):
    out, fg = auto_run["out"], auto_run["fg"]
    table = read_table(str(out / "blocks" / "table.tsv"))
    exact = np.array([fg[r.cz0:r.cz1, r.cy0:r.cy1, r.cx0:r.cx1].mean()
                      for r in table.itertuples()])
    aligned = table["aligned"].to_numpy(bool)
    print(f"blocks: {len(table)}, aligned {aligned.sum()}, true foreground fractions "
          f"{np.round(exact, 3).tolist()}")
    assert aligned.any() and not aligned.all()
    assert not aligned[exact < 0.05].any()
    qc = read_table(str(out / "blocks" / "qc.tsv"))
    status = dict(zip(qc["id"], qc["status"]))
    assert all(status[bid] == "skipped" for bid in table["id"][~aligned]), status
    assert all(status[bid] in ("ok", "fallback") for bid in table["id"][aligned]), status
    # align_block ran for the aligned blocks only (each job writes its log)
    logged = {p.stem for p in (out / "logs" / "blocks").rglob("*.log")}
    assert logged == set(table["id"][aligned]), (logged, table["id"][aligned].tolist())


def test_a_finished_run_has_nothing_left_to_do(auto_run):
    proc = snakemake(auto_run["root"] / "config.yaml", auto_run["root"], "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]


def test_global_stage_uses_both_auto_masks(auto_run):
    log = (auto_run["out"] / "logs" / "global_align.log").read_text()
    for role in ("fixed", "moving"):
        assert f"global stage mask: {auto_run['out'] / 'masks' / f'{role}.ome.zarr'}" in log, log


def test_an_edited_auto_mask_is_used_and_not_recomputed(auto_run):
    """Last in the module: it edits the run's fixed mask (as napari would, in place) and
    runs again: the stages that read the mask rerun, the mask is not recomputed."""
    import zarr

    root, out = auto_run["root"], auto_run["out"]
    table = read_table(str(out / "blocks" / "table.tsv"))
    row = table[~table["aligned"]].iloc[-1]  # a block the computed mask leaves out
    mask = zarr.open_group(str(out / "masks" / "fixed.ome.zarr"), mode="r+")["0"]
    scale = read_ome_zarr(out / "masks" / "fixed.ome.zarr")[1]
    lo = np.floor(np.array([row.cz0, row.cy0, row.cx0]) * DEMO_SPACING / scale).astype(int)
    hi = np.ceil(np.array([row.cz1, row.cy1, row.cx1]) * DEMO_SPACING / scale).astype(int)
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    cfg = load(str(root / "config.yaml"))
    grid = Layout.from_config(cfg).blocks
    assert grid.aligned[list(grid.ids).index(row.id)], "the edited mask was not read"
    proc = snakemake(root / "config.yaml", root, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = proc.stdout + proc.stderr
    for rule in ("block_table", "global_align", "align_block"):
        assert f"rule {rule}:" in planned, (rule, planned[-3000:])
    assert "rule auto_mask:" not in planned, planned[-3000:]
    proc = snakemake(root / "config.yaml", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = read_table(str(out / "blocks" / "table.tsv"))
    assert table.set_index("id").loc[row.id, "aligned"]
    qc = read_table(str(out / "blocks" / "qc.tsv")).set_index("id")
    assert qc.loc[row.id, "status"] in ("ok", "fallback"), qc.loc[row.id, "status"]
