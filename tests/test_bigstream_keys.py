"""bigstream 5.x step dictionaries verbatim: every key of its step functions (the list of
docs/bigstream-keys.md) and the RnR-ExM talk's step lists pass config validation and run
in the global stage; the voxel-based keys mean voxels at the step's alignment spacing."""
import copy
import re

import numpy as np
import pytest

from conftest import ROOT, demo_config, render_blobs, talk_steps
from snakestream.config import validate
from snakestream.errors import AlignmentError, ConfigError
from snakestream.io.volumes import open_volume
from snakestream.register import features
from snakestream.register.align import Image, run_step, run_steps, step_mask
from snakestream.register.feature_align import blob_scales_um
from snakestream.register.global_stage import global_align
from snakestream.register.steps import normalize_steps

NOTE = ROOT / "docs" / "bigstream-keys.md"
ITERATIONS = 3  # enough to run every optimiser; the talk's thousands are for real data

# one bigstream-style value for every key of bigstream's step functions (and block pipeline)
EVERY_STEP = {"alignment_spacing": 0.8, "fix_mask": True, "mov_mask": [0],
              "fix_origin": [0.0, 0.0, 0.0], "mov_origin": [0.0, 0.0, 0.0],
              "static_transform_list": [], "default": np.eye(4).tolist(), "context": "demo"}
RANSAC = {"blob_sizes": [2, 4], "num_sigma_max": 15, "cc_radius": 3, "nspots": 5000,
          "match_threshold": 0.7, "max_spot_match_distance": 20.0,
          "point_matches_threshold": 12, "align_threshold": 2.0, "diagonal_constraint": 0.25,
          "fix_spots": None, "mov_spots": None, "fix_spots_count_threshold": 12,
          "mov_spots_count_threshold": 12, "fix_spot_detection_kwargs": {},
          "mov_spot_detection_kwargs": {"threshold": 0.0}, "safeguard_exceptions": True}
RANDOM = {"random_iterations": 40, "nreturn": 3, "max_translation": 2.0, "max_rotation": 0.05,
          "max_scale": 1.05, "max_shear": 0.02, "use_patch_mutual_information": False}
LINEAR = {"initial_condition": "CENTER", "rigid": False, "final_metric_check": True}
DEFORM = {"control_point_spacing": 8.0, "control_point_levels": [1],
          "final_metric_check": True}
IRM = {"metric": "MMI", "metric_args": {}, "optimizer": "RSGD",
       "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                          "numberOfIterations": ITERATIONS},
       "sampling": "REGULAR", "sampling_percentage": 0.5, "interpolator": "1",
       "shrink_factors": [1], "smooth_sigmas": [0.5], "callback": None}
BLOCK = {"blocksize": [12, 48, 48], "overlap": 0.5, "foreground_percentage": 0.4,
         "static_transform_list": [], "rebalance_for_missing_neighbors": True}
ALL_KEYS = {**EVERY_STEP, **RANSAC, **RANDOM, **LINEAR, **DEFORM, **IRM, **BLOCK}


@pytest.fixture(scope="module")
def demo(demo_data):
    root = demo_data("bigstream_keys", (24, 96, 96), 3)
    return {"root": root, "fix": open_volume(str(root / "data" / "fix.zarr"), "s0"),
            "mov": open_volume(str(root / "data" / "mov.h5"), "ch0")}


def _config(demo, global_steps, block_steps, **blocks):
    cfg = demo_config(demo["root"] / "data", demo["root"] / "out", global_steps=global_steps)
    cfg["blocks"] = {**cfg["blocks"], **blocks, "steps": block_steps}
    return cfg


def _yaml(steps):
    """A Python step list as YAML gives it (lists, not tuples)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    return [[name, plain(kwargs)] for name, kwargs in steps]


def _note_keys():
    """The keys (first table column, in backticks) of docs/bigstream-keys.md."""
    keys = set()
    for line in NOTE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1:
            keys.update(re.findall(r"`([a-z_]+)`", cells[0]))
    return keys


def test_the_note_lists_every_key_this_test_runs():
    assert _note_keys() == set(ALL_KEYS)


def test_every_bigstream_key_passes_config_validation(demo):
    steps = [["ransac", {**EVERY_STEP, **RANSAC}], ["random", {**EVERY_STEP, **RANDOM}],
             ["affine", {**EVERY_STEP, **IRM, **LINEAR}],
             ["rigid", {**EVERY_STEP, **IRM, **LINEAR, "rigid": True}]]
    block_steps = [["affine", {**EVERY_STEP, **IRM, **LINEAR}],
                   ["deform", {**EVERY_STEP, **IRM, **DEFORM}]]
    cfg = validate(_config(demo, steps, block_steps,
                           **{k: v for k, v in BLOCK.items() if k != "blocksize"}))
    assert [s[0] for s in cfg["_global_steps"]] == ["ransac", "random", "affine", "rigid"]
    assert [s[0] for s in cfg["_block_steps"]] == ["affine", "deform"]
    assert cfg["blocks"]["foreground_fraction"] == BLOCK["foreground_percentage"]
    _, ransac = cfg["_global_steps"][0]
    assert ransac["blob_sizes"] == [2.0, 4.0] and ransac["blob_radius"] is None


def test_every_bigstream_key_runs_in_the_global_stage(demo):
    steps = [["ransac", {**EVERY_STEP, **RANSAC}], ["random", {**EVERY_STEP, **RANDOM}],
             ["affine", {**EVERY_STEP, **IRM, **LINEAR, "initial_condition": None}]]
    cfg = validate(_config(demo, steps, demo_config(".", ".")["blocks"]["steps"]))
    lines = []
    affine, qcs = global_align(cfg["_global_steps"], demo["fix"], demo["mov"], log=lines.append)
    assert [q["step"] for q in qcs] == ["ransac", "random", "affine"]
    assert qcs[0]["status"] == "ok"  # safeguard_exceptions: true, so a failure would raise
    assert qcs[0]["ncc_after"] > qcs[0]["ncc_before"] + 0.3
    assert qcs[-1]["ncc_after"] >= qcs[0]["ncc_after"] - 0.01
    # bigstream's context tag on every step's lines (the stage's own lines name the
    # pyramid level it read, before any step)
    step_lines = [line for line in lines if not line.startswith("global stage")]
    assert step_lines and all("[demo]" in line for line in step_lines), lines
    assert np.all(np.isfinite(affine))


@pytest.mark.parametrize("name", sorted(talk_steps()))
def test_talk_step_lists_validate_and_run_in_the_global_stage(demo, name):
    """Each talk list: its rigid/affine steps as global_steps, the whole list as block steps;
    the global steps run on the demo pair with a few iterations."""
    steps = _yaml(talk_steps()[name])
    global_steps = [s for s in steps if s[0] != "deform"]
    cfg = validate(_config(demo, global_steps, steps))
    assert [s[0] for s in cfg["_block_steps"]] == [s[0] for s in steps]
    run = copy.deepcopy(cfg["_global_steps"])
    for _, params in run:
        params["optimizer_args"]["numberOfIterations"] = ITERATIONS
    affine, qcs = global_align(run, demo["fix"], demo["mov"], log=lambda line: None)
    assert [q["step"] for q in qcs] == [s[0] for s in global_steps]
    assert all(q["status"] == "ok" for q in qcs), qcs
    assert np.all(np.isfinite(affine))
    assert qcs[-1]["ncc_after"] > qcs[0]["ncc_before"] + 0.05


# ---------------------------------------------------------------- what the keys mean


def _blob_image(radius_vox=2.5, seed=0):
    """30 blobs of ``radius_vox`` voxels on a (20, 40, 40) voxel grid."""
    rng = np.random.default_rng(seed)
    shape = np.array([20, 40, 40])
    centres = rng.uniform(4, shape - 5, (30, 3))
    sigmas = np.full(30, radius_vox / np.sqrt(3))
    return render_blobs(centres, sigmas, np.ones(30), tuple(shape), np.ones(3))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 2.0, 2.0)])
def test_blob_sizes_and_cc_radius_are_voxels_at_the_steps_spacing(spacing):
    """The same voxel array finds the same spots (in voxels) whatever its µm spacing,
    like bigstream's detector on the skip-sampled image."""
    (_, params), = normalize_steps([["ransac", {"blob_sizes": [2, 4], "cc_radius": 3}]], "s")
    image = _blob_image()
    found = {}
    for scale in (1.0, 2.5):
        sp = np.asarray(spacing) * scale
        sizes = blob_scales_um(params, sp)
        np.testing.assert_allclose(sizes["exclude_border_um"], 3 * sp)
        points, _ = features.detect_blobs(image, sp, sizes["blob_radius_um"],
                                          max_radius_um=sizes["max_radius_um"],
                                          num_scales=sizes["num_scales"],
                                          exclude_border_um=sizes["exclude_border_um"])
        found[scale] = np.round(points / sp, 3)
    assert len(found[1.0]) >= 10
    np.testing.assert_allclose(found[1.0], found[2.5], atol=1e-3)
    assert np.all(found[1.0] >= 3) and np.all(found[1.0] <= np.array([19, 39, 39]) - 3)


def test_num_sigma_is_bigstreams_min_of_range_and_cap():
    for sizes, cap in (([2, 6], 15), ([2, 30], 15), ([3, 3], 15), ([1, 9], 2)):
        (_, params), = normalize_steps([["ransac", {"blob_sizes": sizes,
                                                    "num_sigma_max": cap}]], "s")
        scales = blob_scales_um(params, np.ones(3))
        assert scales["num_scales"] == min(sizes[1] - sizes[0], cap)
        radii = features.scale_radii(scales["blob_radius_um"], scales["max_radius_um"],
                                     scales["num_scales"])
        assert radii[0][0] == sizes[0] and radii[-1][0] == (sizes[1] if len(radii) > 1
                                                            else sizes[0])


def test_max_spot_match_distance_is_measured_after_the_prior():
    fix = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    prior = np.eye(4)
    prior[:3, 3] = [0.0, 5.0, 0.0]  # moving = fixed + 5 µm in y
    mov = fix + [0.0, 5.0, 0.0]
    near = features.near_pairs(fix, mov, prior, 1.0)
    np.testing.assert_array_equal(near, np.eye(2, dtype=bool))
    assert not features.near_pairs(fix, mov, np.eye(4), 1.0).any()
    desc = np.eye(2, 4, dtype=np.float32)
    i, j = features.match_mutual(desc, desc[::-1], 0.5, allowed=np.eye(2, dtype=bool))
    assert len(i) == 0  # the only well-correlated pairs are too far apart


def test_diagonal_constraint_rejects_implausible_matrices():
    features.check_diagonal(np.diag([1.2, 0.8, 1.0, 1.0]), 0.25)
    with pytest.raises(AlignmentError, match="diagonal_constraint"):
        features.check_diagonal(np.diag([1.3, 1.0, 1.0, 1.0]), 0.25)


def test_random_bounds_have_bigstreams_meaning():
    """max_scale 1.2: scales in [1/1.2, 1.2]; max_rotation: a bound on the rotation vector."""
    seen = []

    def score(A):
        seen.append(np.asarray(A))
        return 0.0

    image = np.zeros((10, 10, 10))
    features.random_affine_search(image, image, np.ones(3), np.ones(3), score, iterations=300,
                                  max_translation_um=0.0, max_rotation_rad=0.0,
                                  max_scale=1.2, max_shear=0.0)
    scales = np.array([np.diag(A)[:3] for A in seen[1:]])
    assert scales.min() >= 1 / 1.2 - 1e-9 and scales.max() <= 1.2 + 1e-9
    assert scales.min() < 0.86 and scales.max() > 1.16
    seen.clear()
    features.random_affine_search(image, image, np.ones(3), np.ones(3), score, iterations=300,
                                  max_translation_um=0.0, max_rotation_rad=0.1,
                                  max_scale=1.0, max_shear=0.0)
    angles = np.array([np.arccos(np.clip((np.trace(A[:3, :3]) - 1) / 2, -1, 1))
                       for A in seen[1:]])
    assert angles.max() <= 0.1 * np.sqrt(3) + 1e-9 and angles.max() > 0.12


def test_origins_give_the_frame_of_a_matrix_initial_condition():
    given = np.eye(4)
    given[:3, :3] = [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.9]]
    given[:3, 3] = [1.0, -2.0, 3.0]
    fix_origin, mov_origin = np.array([5.0, 0.0, -4.0]), np.array([0.0, 7.0, 1.0])
    (_, params), = normalize_steps([["affine", {
        "initial_condition": given.tolist(), "fix_origin": fix_origin.tolist(),
        "mov_origin": mov_origin.tolist()}]], "s")
    ours = np.asarray(params["initial_condition"])
    x = np.array([2.0, 3.0, 4.0])  # a fixed point, voxel 0 at 0 µm
    y = given[:3, :3] @ (x + fix_origin) + given[:3, 3] - mov_origin  # bigstream's frames
    np.testing.assert_allclose(ours[:3, :3] @ x + ours[:3, 3], y)


def _noise_images():
    rng = np.random.default_rng(0)
    return (Image(rng.random((16, 32, 32)).astype(np.float32), np.ones(3)),
            Image(rng.random((16, 32, 32)).astype(np.float32), np.ones(3)))


def test_default_is_returned_and_safeguard_exceptions_raises():
    fix, mov = _noise_images()
    default = np.eye(4)
    default[:3, 3] = [1.0, 2.0, 3.0]
    (name, params), = normalize_steps([["ransac", {"blob_radius": 40.0,
                                                   "default": default.tolist()}]], "s")
    result = run_step(name, params, fix, mov)
    assert result.qc["status"] == "fallback" and "default" in result.qc["reason"]
    np.testing.assert_array_equal(result.parameters.reshape(4, 4), default)
    (name, params), = normalize_steps([["ransac", {"blob_radius": 40.0,
                                                   "safeguard_exceptions": True}]], "s")
    with pytest.raises(AlignmentError, match="too few points"):
        run_steps([(name, params)], fix, mov, log=lambda line: None)


def test_step_mask_of_background_values_and_switches():
    data = np.zeros((4, 4, 4), np.float32)
    data[1:3, 1:3, 1:3] = 5.0
    data[0, 0, 0] = 7.0
    configured = np.ones(data.shape, bool)
    image = Image(data, np.ones(3), mask=configured)
    np.testing.assert_array_equal(step_mask(image, [0.0, 7.0]), data == 5.0)
    assert step_mask(image, None) is configured and step_mask(image, True) is configured
    assert step_mask(image, False) is None


@pytest.mark.parametrize("step, key", [
    (["affine", {"callback": "print"}], "callback"),
    (["ransac", {"fix_spots": [[1, 2, 3]]}], "fix_spots"),
    (["ransac", {"fix_spot_detection_kwargs": {"overlap": 0.5}}], "overlap"),
    (["ransac", {"blob_sizes": [2, 6], "blob_radius": 2.0}], "blob_sizes"),
    (["ransac", {"blob_sizes": [6, 2]}], "blob_sizes"),
    (["random", {"use_patch_mutual_information": True}], "use_patch_mutual_information"),
    (["rigid", {"static_transform_list": [np.eye(4).tolist()]}], "static_transform_list"),
    (["affine", {"fix_mask": "mask.zarr"}], "fix_mask"),
])
def test_refused_values_name_the_key_and_the_alternative(step, key):
    with pytest.raises(ConfigError, match=f"{key}.*Fix: ") as err:
        normalize_steps([step], "blocks.steps")
    assert "\n" not in str(err.value)


def test_max_scale_is_bigstreams_factor_not_a_fraction():
    with pytest.raises(ConfigError, match=r"max_scale: 0.1: must be >= 1 \(1.1 allows"):
        normalize_steps([["random", {"max_scale": 0.1}]], "global_steps")


@pytest.mark.parametrize("blocks, key", [
    ({"foreground_percentage": 0.3, "foreground_fraction": 0.5}, "foreground_percentage"),
    ({"rebalance_for_missing_neighbors": False}, "rebalance_for_missing_neighbors"),
    ({"static_transform_list": [np.eye(4).tolist()]}, "static_transform_list"),
])
def test_block_pipeline_keys_refused_with_the_key(demo, blocks, key):
    cfg = _config(demo, [["affine", {}]], [["affine", {}]], **blocks)
    with pytest.raises(ConfigError, match=f"blocks.{key}.*Fix: "):
        validate(cfg)
