"""Multiscale inputs: levels found in the metadata, the coarsest usable one read, the log names it.

The pyramids are written by the ecosystem's own writers: ome-zarr-py
(``ome_zarr.writer.write_image``, NGFF 0.4 on Zarr v2 and 0.5 on Zarr v3) and
tensorstore (N5 ``s0 … s2``, levels made by its ``downsample`` driver, with the
``downsamplingFactors`` and group ``pixelResolution`` attributes n5-spark, n5-viewer and
BigStitcher write).
"""
import json
import os

import numpy as np
import pytest
from scipy import ndimage

from conftest import demo_config, fast_settings, snakemake, write_config
from snakestream.demo.scene import load_truth
from snakestream.fields.transform import transform_points
from snakestream.grid.layout import fixed_block_grid
from snakestream.io import n5
from snakestream.io.downsample import read_downsampled
from snakestream.io.pyramids import pyramid_levels, read_coarse
from snakestream.io.volumes import open_volume
from snakestream.io.zarr_store import open_zarr_array
from snakestream.qc.metrics import tre
from snakestream.register.align import downsample_factors
from snakestream.register.global_stage import downsample_volume

SPACING = np.array([0.8, 0.4, 0.4])  # µm, z, y, x
# level factors (z, y, x) relative to level 0: z is halved once y/x are as coarse
LEVELS = [(1, 1, 1), (1, 2, 2), (2, 4, 4)]


def write_ome_pyramid(path, data, spacing, *, version="0.4", factors=LEVELS, method=None):
    """An OME-Zarr image written by ome-zarr-py: levels ``s0``, ``s1``, ... at `factors`."""
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    extra = {} if method is None else {"method": method}
    write_image(data, root, axes="zyx", fmt=format_from_version(version),
                scale_factors=[dict(zip("zyx", f)) for f in factors[1:]],
                scale=dict(zip("zyx", map(float, spacing))),
                axes_units={a: "micrometer" for a in "zyx"}, **extra)
    return str(path)


def write_n5_pyramid(path, data, spacing, *, factors=LEVELS):
    """An N5 pyramid as n5-spark / BigStitcher leave it: ``s<k>`` block means of ``s0``
    by `factors`, written by tensorstore's n5 driver (its ``downsample`` driver makes the
    levels), each with ``downsamplingFactors`` (x, y, z), and the group's
    ``pixelResolution`` (x, y, z, µm), the only spacing in the file
    (:func:`snakestream.io.n5.set_pyramid_attributes`).
    """
    import tensorstore as ts

    def spec(k):
        return {"driver": "n5", "kvstore": {"driver": "file", "path": os.path.join(path, f"s{k}")}}

    for k, f in enumerate(factors):
        src = data.T if k == 0 else ts.downsample(ts.open(spec(0)).result(), list(f[::-1]),
                                                  "mean")
        dst = ts.open(spec(k), create=True, dtype=ts.dtype(data.dtype.name), shape=src.shape,
                      chunk_layout=ts.ChunkLayout(chunk_shape=[32, 32, 16])).result()
        dst.write(src).result()
    n5.set_pyramid_attributes(str(path), spacing, factors)
    return str(path)


@pytest.fixture(scope="module")
def smooth():
    """A smooth random (z, y, x) float32 volume whose shape the level factors divide."""
    rng = np.random.default_rng(3)
    return ndimage.gaussian_filter(rng.random((18, 48, 44)), 2.5).astype(np.float32) * 100


@pytest.fixture(scope="module", params=["ome-0.4", "ome-0.5", "n5"])
def pyramid(request, smooth, tmp_path_factory):
    """The smooth volume as a 3-level pyramid: (Volume of its level 0, kind)."""
    folder = tmp_path_factory.mktemp("pyramid")
    if request.param == "n5":
        path = write_n5_pyramid(folder / "img.n5", smooth, SPACING)
    else:
        path = write_ome_pyramid(folder / "img.zarr", smooth, SPACING,
                                 version=request.param.split("-")[1])
    return open_volume(path, "s0"), request.param


def test_levels_and_their_spacing_come_from_the_metadata(pyramid):
    vol, _ = pyramid
    levels, skipped = pyramid_levels(vol)
    assert skipped == []
    assert [lv.dataset for lv in levels] == ["s0", "s1", "s2"]
    for level, f in zip(levels, LEVELS):
        np.testing.assert_allclose(level.spacing, SPACING * f)
        np.testing.assert_allclose(level.offset, (np.array(f) - 1) / 2 * SPACING)
        assert level.shape == tuple(int(np.ceil(n / k)) for n, k in zip(vol.shape, f))


def test_global_stage_reads_the_coarsest_level_and_matches_level_0(pyramid):
    vol, kind = pyramid
    factors = (2, 4, 4)  # alignment spacing 1.6 µm, the demo's
    coarse = read_coarse(vol, factors, purpose="global stage")
    assert coarse.level.dataset == "s2"
    assert f"global stage: {vol.path} pyramid level 's2'" in coarse.message
    full = read_downsampled(vol, factors)
    assert coarse.data.shape == full.shape
    np.testing.assert_allclose(coarse.spacing, SPACING * factors)
    np.testing.assert_allclose(coarse.offset, (np.array(factors) - 1) / 2 * SPACING)
    error = np.abs(coarse.data - full).mean() / np.abs(full).mean()
    # tensorstore's mean is our block mean; ome-zarr-py's default is an antialiased resize
    assert error < (1e-6 if kind == "n5" else 0.02), error


def test_remaining_factor_is_block_averaged_from_the_level(pyramid):
    vol, _ = pyramid
    image = downsample_volume(vol, 3.2)  # factors (4, 8, 8): s2, then 2 x 2 x 2
    full = read_downsampled(vol, (4, 8, 8))
    assert image.data.shape == full.shape
    np.testing.assert_allclose(image.spacing, SPACING * (4, 8, 8))
    np.testing.assert_allclose(image.origin, (np.array([4, 8, 8]) - 1) / 2 * SPACING)
    assert np.abs(image.data - full).mean() / np.abs(full).mean() < 0.02


def test_no_level_fits_so_the_configured_level_is_read(pyramid):
    vol, _ = pyramid
    lines = []
    image = downsample_volume(vol, 1.2, log=lines.append)  # factors (1, 3, 3)
    factors = downsample_factors(vol.spacing, 1.2)
    assert factors.tolist() == [1, 3, 3]  # from s1 (0.8 µm), 2 x 2 would give 1.6 µm, not 1.2
    assert len(lines) == 1 and "configured level 's0'" in lines[0], lines
    np.testing.assert_array_equal(image.data, read_downsampled(vol, factors))


def test_a_level_coarser_than_needed_is_not_read(smooth, tmp_path):
    # ome-zarr-py floors odd level shapes and writes scale = extent / voxels:
    # s2 of 50 x 46 voxels at 0.4 µm is 1.667 x 1.673 µm, coarser than 1.6 µm
    odd = np.pad(smooth, ((0, 0), (0, 2), (0, 2)), mode="edge")  # 18 x 50 x 46
    path = write_ome_pyramid(tmp_path / "odd.zarr", odd, SPACING)
    vol = open_volume(path, "s0")
    levels, _ = pyramid_levels(vol)
    assert levels[2].spacing[1] > 1.6
    coarse = read_coarse(vol, (2, 4, 4), purpose="global stage")
    assert coarse.level.dataset == "s1"
    full = read_downsampled(vol, (2, 4, 4))
    assert coarse.data.shape == full.shape
    assert np.abs(coarse.data - full).mean() / np.abs(full).mean() < 0.02


def test_spacing_from_the_config_carries_over_to_the_levels(pyramid):
    vol, _ = pyramid
    levels, _ = pyramid_levels(open_volume(vol.path, "s0", spacing=[2.0, 1.0, 1.0]))
    np.testing.assert_allclose(levels[2].spacing, [4.0, 4.0, 4.0])


def test_a_level_of_another_extent_is_left_out_and_named(smooth, tmp_path):
    path = write_n5_pyramid(tmp_path / "img.n5", smooth, SPACING)
    attrs_path = tmp_path / "img.n5" / "s2" / "attributes.json"
    attrs = json.loads(attrs_path.read_text())
    attrs["downsamplingFactors"] = [8, 8, 2]  # says 8x in y/x, holds 4x
    attrs_path.write_text(json.dumps(attrs))
    vol = open_volume(path, "s0")
    levels, skipped = pyramid_levels(vol)
    assert [lv.dataset for lv in levels] == ["s0", "s1"]
    assert len(skipped) == 1 and skipped[0].startswith("'s2' (covers")
    coarse = read_coarse(vol, (2, 4, 4), purpose="global stage")
    assert coarse.level.dataset == "s1" and "not used: 's2' (covers" in coarse.message


def test_a_volume_outside_a_multiscale_group_is_read_as_before(smooth, tmp_path):
    from snakestream.io.volumes import write_volume

    write_volume(tmp_path / "plain.zarr", smooth, SPACING, dataset="s0")
    vol = open_volume(tmp_path / "plain.zarr", "s0")
    coarse = read_coarse(vol, (2, 4, 4), purpose="global stage")
    assert "(no pyramid levels)" in coarse.message
    np.testing.assert_array_equal(coarse.data, read_downsampled(vol, (2, 4, 4)))


def test_block_table_reads_a_coarse_level_of_a_multiscale_mask(tmp_path):
    from ome_zarr.scale import Methods

    shape = (32, 96, 96)
    zz, yy, xx = np.indices(shape) * SPACING[:, None, None, None]
    centre, radii = np.array(shape) * SPACING / 2, np.array([10.0, 16.0, 12.0])
    mask = ((((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
             + ((xx - centre[2]) / radii[2]) ** 2) <= 1).astype(np.uint8)
    write_ome_pyramid(tmp_path / "mask.zarr", mask, SPACING, method=Methods.NEAREST)
    fixed = {"mask": {"path": str(tmp_path / "mask.zarr"), "dataset": "s0"}}
    image = open_volume(tmp_path / "mask.zarr", "s0")  # stands in for the fixed image
    blocks = dict(blocksize=[8, 16, 16], overlap=0.5, threshold=0.5)
    lines = []
    grid = fixed_block_grid(image, fixed, **blocks, cache_dir=str(tmp_path / "cache"),
                            log=lines.append)
    # a core is 6.4 x 6.4 x 6.4 µm: s2 (1.6 µm) has 4 voxels across, s1 (0.8 x 0.8 x 0.8) 8
    assert len(lines) == 1 and f"block table foreground: {tmp_path / 'mask.zarr'} pyramid " \
        "level 's1'" in lines[0], lines
    exact = [mask[tuple(slice(lo, hi) for lo, hi in zip(a, b))].mean()
             for a, b in zip(grid.core_lo, grid.core_hi)]
    assert np.abs(grid.foreground - exact).max() < 0.15
    assert np.mean(grid.aligned == (np.array(exact) >= 0.5)) > 0.95


# ---------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def pyramid_run(demo_data):
    """The demo pair as pyramids (fixed: NGFF 0.5 by ome-zarr-py; moving: N5 by
    tensorstore; fixed mask: NGFF 0.4, nearest levels), global stage and report only."""
    from ome_zarr.scale import Methods

    root = demo_data("pyramids", (32, 96, 96), seed=4)
    data = root / "data"
    fix = open_volume(data / "fix.zarr", "s0").read()
    mov_vol = open_volume(data / "mov.h5", "/ch0")
    mask = open_volume(data / "fix_mask.zarr", "s0").read()
    paths = {"fix": write_ome_pyramid(root / "fix_ome.zarr", fix, SPACING, version="0.5"),
             "mov": write_n5_pyramid(root / "mov.n5", mov_vol.read(), mov_vol.spacing),
             "mask": write_ome_pyramid(root / "mask_ome.zarr", mask, SPACING,
                                       method=Methods.NEAREST)}
    cfg = demo_config(data, root / "out", blocks=None)
    cfg["fixed"] = {"path": paths["fix"], "dataset": "s0", "spacing": None,
                    "mask": {"path": paths["mask"], "dataset": "s0"}}
    cfg["moving"] = {"path": paths["mov"], "dataset": "s0", "spacing": None, "mask": None}
    proc = snakemake(write_config(root / "config.yaml", cfg), root,
                     str(root / "out" / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, paths


def _log(root, name):
    return (root / "out" / "logs" / name).read_text()


def test_global_stage_log_names_the_pyramid_level_of_each_image(pyramid_run):
    root, paths = pyramid_run
    log = _log(root, "global_align.log")
    # alignment spacing 1.6 µm from 0.8 x 0.4 x 0.4 µm: s2 (1.6 µm) on both sides
    for key in ("fix", "mov"):
        assert f"global stage: {paths[key]} pyramid level 's2'" in log, log[:2000]
    assert f"global stage mask: {paths['mask']} pyramid level 's2'" in log


def test_affine_from_the_levels_recovers_the_known_transform(pyramid_run):
    root, _ = pyramid_run
    truth = load_truth(str(root / "data" / "truth.npz"))
    affine = np.loadtxt(root / "out" / "global" / "affine.mat")
    before = tre(truth.landmarks_fixed, truth.landmarks_moving)["median"]
    after = tre(transform_points(truth.landmarks_fixed, affine), truth.landmarks_moving)["median"]
    assert after < 0.25 * before, (before, after)


def test_report_log_names_the_full_resolution_images_it_slices(pyramid_run):
    root, paths = pyramid_run
    log = _log(root, "report.log")
    # the report's slices are full resolution: level 0 of both pyramids, no overviews
    assert "report slices:" in log and "full resolution" in log, log
    assert f"{paths['fix']} [s0]" in log and f"{paths['mov']} [s0]" in log, log


@pytest.fixture(scope="module")
def n5_run(demo_data):
    """The demo pair as N5 pyramids the way n5-spark / BigStitcher leave them (both
    images; the fixed mask as given), the whole workflow with blocks, fast settings."""
    root = demo_data("n5_pyramids", (32, 96, 96), seed=2)
    data = root / "data"
    fix_vol, mov_vol = open_volume(data / "fix.zarr", "s0"), open_volume(data / "mov.h5", "/ch0")
    paths = {"fix": write_n5_pyramid(root / "fix.n5", fix_vol.read(), fix_vol.spacing),
             "mov": write_n5_pyramid(root / "mov.n5", mov_vol.read(), mov_vol.spacing)}
    cfg = fast_settings(demo_config(data, root / "out"))
    cfg["fixed"].update(path=paths["fix"], dataset="s0", spacing=None)
    cfg["moving"].update(path=paths["mov"], dataset="s0", spacing=None)
    proc = snakemake(write_config(root / "config.yaml", cfg), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, paths


def test_n5_pyramids_end_to_end_global_stage_reads_level_s2(n5_run):
    root, paths = n5_run
    log = _log(root, "global_align.log")
    for key in ("fix", "mov"):
        assert f"global stage: {paths[key]} pyramid level 's2'" in log, log[:2000]
    assert (root / "out" / "report.html").exists()


def test_n5_pyramids_end_to_end_register_against_the_truth(n5_run):
    root, _ = n5_run
    truth = load_truth(str(root / "data" / "truth.npz"))
    out = root / "out"
    affine = np.loadtxt(out / "global" / "affine.mat")
    field = open_zarr_array(str(out / "deform.zarr"))
    pts, target = truth.landmarks_fixed, truth.landmarks_moving
    before = tre(pts, target)["median"]
    after_global = tre(transform_points(pts, affine), target)["median"]
    after_blocks = tre(transform_points(pts, affine, field[...], field.attrs["spacing"]),
                       target)["median"]
    print(f"N5 pyramids end to end: median TRE {before:.3f} µm before, {after_global:.3f} "
          f"after the global affine, {after_blocks:.3f} after the blocks")
    assert after_global < 0.25 * before
    assert after_blocks < min(0.5, after_global)
