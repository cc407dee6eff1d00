"""Tests of the synthetic demo pair and its ground truth (snakestream.demo.scene)."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from scipy import ndimage

from snakestream.demo import scene as demo
from snakestream.errors import InputError
from snakestream.grid.geometry import apply_affine
from snakestream.register.similarity import ncc

SHAPE = (24, 80, 80)
SPACING = (0.8, 0.4, 0.4)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small demo pair on disk (seed 0): paths dict."""
    return demo.make_demo(tmp_path_factory.mktemp("demo0"), shape=SHAPE, spacing=SPACING, seed=0)


@pytest.fixture(scope="module")
def truth(written):
    return demo.load_truth(written["truth"])


@pytest.fixture(scope="module")
def images(written):
    """(fixed, moving, mask) arrays read back from disk."""
    return _read_all(written)


def _read_all(paths):
    """(fixed, moving, mask) arrays of the demo files ``paths`` (make_demo's dict)."""
    fix = zarr.open_group(paths["fix"], mode="r")["s0"][...]
    mask = zarr.open_group(paths["fix_mask"], mode="r")["s0"][...]
    with h5py.File(paths["mov"], "r") as f:
        mov = f["ch0"][...]
    return fix, mov, mask


def _pearson_pulled(fix, mov, mask, truth, mapping):
    """Pearson r inside the mask between fixed and moving sampled at mapping(x)."""
    points = demo.grid_points(fix.shape, truth.fix_spacing).reshape(-1, 3)
    index = (mapping(points) / truth.mov_spacing).T
    pulled = ndimage.map_coordinates(mov.astype(float), index, order=1, cval=np.nan)
    keep = mask.reshape(-1).astype(bool) & np.isfinite(pulled)
    return ncc(fix.reshape(-1)[keep], pulled[keep])


# ---------------------------------------------------------------- truth ----
def test_transform_maps_landmarks(truth):
    assert len(truth.landmarks_fixed) >= 20
    np.testing.assert_allclose(truth.transform(truth.landmarks_fixed), truth.landmarks_moving,
                               atol=1e-9)


def test_landmarks_inside_both_domains(truth):
    fix_top = (truth.fix_shape - 1) * truth.fix_spacing
    mov_top = (truth.mov_shape - 1) * truth.mov_spacing
    assert np.all(truth.landmarks_fixed >= demo.LANDMARK_MARGIN_UM)
    assert np.all(truth.landmarks_fixed <= fix_top - demo.LANDMARK_MARGIN_UM)
    assert np.all((truth.landmarks_moving > 0) & (truth.landmarks_moving < mov_top))


def test_moving_grid_covers_mapped_fixed_domain(truth):
    points = demo.grid_points(truth.fix_shape, truth.fix_spacing).reshape(-1, 3)
    mapped = truth.transform(points)
    assert np.all(mapped.min(axis=0) > 0)
    assert np.all(mapped.max(axis=0) < (truth.mov_shape - 1) * truth.mov_spacing)


def test_fixed_point_inversion_is_accurate(truth):
    rng = np.random.default_rng(1)
    top = (truth.mov_shape - 1) * truth.mov_spacing
    y = rng.uniform(0, 1, (2000, 3)) * top
    err = np.linalg.norm(truth.transform(truth.inverse(y)) - y, axis=1)
    assert err.max() < 1e-3


def test_displacement_is_smooth_and_micron_sized(truth):
    points = demo.grid_points(truth.fix_shape, truth.fix_spacing).reshape(-1, 3)[::7]
    size = np.linalg.norm(truth.displacement(points), axis=1)
    grad = np.linalg.norm(truth.displacement_gradient(points), ord=2, axis=(1, 2))
    assert 0.5 < size.max() < 3.0
    assert grad.max() < 0.5


def test_affine_is_round_to_round_sized(truth):
    linear = truth.affine[:3, :3]
    assert np.allclose(truth.affine[3], [0, 0, 0, 1])
    singular = np.linalg.svd(linear, compute_uv=False)
    assert np.all(np.abs(singular - 1) < 0.08)
    u, _, vt = np.linalg.svd(linear)
    angle = np.degrees(np.arccos((np.trace(u @ vt) - 1) / 2))
    assert 1.0 < angle < 8.0


def test_load_truth_round_trips(truth):
    fresh = demo.make_truth_transform(np.random.default_rng(0), SHAPE, SPACING, SPACING)
    for name in ("affine", "disp_amp", "disp_freq", "disp_phase", "mov_shape", "fix_shape"):
        np.testing.assert_array_equal(getattr(truth, name), getattr(fresh, name))
    points = truth.landmarks_fixed
    np.testing.assert_array_equal(truth.displacement(points), fresh.displacement(points))


def test_load_truth_names_bad_file(tmp_path):
    bad = tmp_path / "truth.npz"
    bad.write_text("not an npz")
    with pytest.raises(InputError, match="truth.npz"):
        demo.load_truth(bad)


# --------------------------------------------------------------- images ----
def test_moving_is_fixed_pulled_through_truth(images, truth):
    fix, mov, mask = images
    full = _pearson_pulled(fix, mov, mask, truth, truth.transform)
    affine_only = _pearson_pulled(fix, mov, mask, truth,
                                  lambda p: apply_affine(truth.affine, p))
    identity = _pearson_pulled(fix, mov, mask, truth, lambda p: p)
    assert full > 0.9
    assert full > affine_only + 0.05  # the deformation is visible ...
    assert 1 - affine_only > 5 * (1 - full)  # ... and explains most of the mismatch
    assert identity < 0.4


def test_different_moving_spacing_still_matches():
    pair = demo.make_pair(shape=SHAPE, spacing=SPACING, mov_spacing=(1.0, 0.5, 0.5), seed=2)
    truth = pair["truth"]
    assert np.allclose(truth.mov_spacing, (1.0, 0.5, 0.5))
    r = _pearson_pulled(pair["fix"], pair["mov"], pair["fix_mask"], truth, truth.transform)
    assert r > 0.85


def test_mask_is_neither_empty_nor_full(images):
    _, _, mask = images
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    assert 0.05 < mask.mean() < 0.8
    assert mask[-6:, -16:, -16:].sum() == 0  # a background corner


def test_file_layout(written, truth):
    for key in ("fix", "fix_mask"):
        group = zarr.open_group(written[key], mode="r")
        assert group.metadata.zarr_format == 2
        assert group["s0"].attrs["spacing"] == list(SPACING)
        assert group["s0"].shape == SHAPE
    assert zarr.open_group(written["fix"], mode="r")["s0"].dtype == np.uint16
    with h5py.File(written["mov"], "r") as f:
        assert f["ch0"].dtype == np.uint16 and f["ch0"].chunks is not None
        assert tuple(f["ch0"].shape) == tuple(truth.mov_shape)
        np.testing.assert_allclose(f["ch0"].attrs["element_size_um"], SPACING)
    leftovers = [p.name for p in Path(written["fix"]).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


# ---------------------------------------------------------- determinism ----
def test_same_seed_same_bytes_different_seed_differs(written, images, tmp_path):
    again = _read_all(demo.make_demo(tmp_path / "again", shape=SHAPE, spacing=SPACING, seed=0))
    for first, second in zip(images, again):
        assert first.tobytes() == second.tobytes()
    assert Path(written["mov"]).read_bytes() == (tmp_path / "again" / "mov.h5").read_bytes()
    other = _read_all(demo.make_demo(tmp_path / "other", shape=SHAPE, spacing=SPACING, seed=1))
    assert images[0].tobytes() != other[0].tobytes()
    assert images[1].tobytes() != other[1].tobytes()


def test_rewrite_replaces_existing_output(tmp_path):
    first = demo.make_demo(tmp_path, shape=(16, 40, 40), spacing=SPACING, seed=4)
    second = demo.make_demo(tmp_path, shape=(16, 40, 40), spacing=SPACING, seed=5)
    assert first == second
    assert demo.load_truth(second["truth"]).fix_shape.tolist() == [16, 40, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["fix.zarr", "mov.h5", "fix_mask.zarr", "truth.npz", "landmarks.csv"])


def test_landmarks_csv_is_the_truth_in_bigwarp_format(written, truth):
    """landmarks.csv: BigWarp rows (name, true, moving x y z, fixed x y z) of the truth's
    landmarks, read back bit for bit."""
    from snakestream.qc.landmarks import read_landmarks

    first = open(written["landmarks"]).readline().strip().split(",")
    assert len(first) == 8 and first[:2] == ['"Pt-0"', '"true"']
    assert float(first[2].strip('"')) == truth.landmarks_moving[0, 2]  # moving x first
    found = read_landmarks(written["landmarks"])
    np.testing.assert_array_equal(found.fixed, truth.landmarks_fixed)
    np.testing.assert_array_equal(found.moving, truth.landmarks_moving)


# ---------------------------------------------------------------- tre, cli --
def test_tre(truth):
    exact = demo.tre(truth.landmarks_moving, truth)
    assert exact["median"] == 0 and exact["p95"] == 0 and exact["n"] == len(truth.landmarks_moving)
    shifted = demo.tre(truth.landmarks_moving + [0.0, 0.0, 1.5], truth)
    assert shifted["median"] == pytest.approx(1.5) and shifted["p95"] == pytest.approx(1.5)
    with pytest.raises(InputError):
        demo.tre(truth.landmarks_moving[:3], truth)


def test_cli_writes_and_prints_paths(tmp_path, capsys):
    demo.main([str(tmp_path), "--shape", "16", "40", "40", "--spacing", "0.8", "0.4", "0.4",
               "--seed", "7"])
    out = capsys.readouterr().out
    for name in ("fix.zarr", "mov.h5", "fix_mask.zarr", "truth.npz"):
        assert (tmp_path / name).exists()
        assert name in out


def test_streamed_demo_matches_the_in_memory_scene(tmp_path):
    """Slab-by-slab rendering: same truth, same noise-free images, exact mask."""
    from snakestream.demo import large as demo_large
    from snakestream.io.volumes import open_volume

    shape, spacing, seed = (21, 40, 44), (0.8, 0.4, 0.4), 4
    pair = demo.make_pair(shape, spacing, seed=seed)
    paths = demo_large.make_demo_streamed(tmp_path, shape, spacing, seed, slab=4,
                                          log=lambda m: None)
    truth = demo.load_truth(paths["truth"])
    for name in ("affine", "landmarks_fixed", "landmarks_moving"):
        assert np.array_equal(getattr(truth, name), getattr(pair["truth"], name))
    # noise-free renderings agree plane for plane
    rng = np.random.default_rng(seed)
    t = demo.make_truth_transform(rng, shape, spacing, spacing)
    scene = demo.make_scene(rng, shape, spacing)
    full = demo.render_fixed(scene, t)
    radii = demo.BLOB_CUTOFF_RADII * scene.radius_max
    for z0 in (0, 5, 17):
        pts = demo_large.slab_points(z0, z0 + 4, shape, np.asarray(spacing))
        part = demo_large.render_planes(scene, pts, scene.centres, radii, np.asarray(spacing), z0)
        assert np.allclose(part, full[z0:z0 + 4], atol=1e-12)
    fix = open_volume(paths["fix"], "s0").read()
    mask = open_volume(paths["fix_mask"], "s0").read()
    mov = open_volume(paths["mov"], "/ch0").read()
    assert fix.shape == shape and mov.shape == pair["mov"].shape
    assert np.array_equal(mask, demo.foreground_mask(fix, spacing))   # halo makes it exact
    # the moving image is the in-memory one up to noise
    assert ncc(mov, pair["mov"]) > 0.95
