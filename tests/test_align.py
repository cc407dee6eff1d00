"""Registration steps recover known transforms (each matrix entry within tolerance)."""
import re

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import about_centre, rotation_z
from snakestream.fields.transform import displacement_on_grid
from snakestream.grid.geometry import compose_affines
from snakestream.register.sitk_transforms import affine_to_sitk
from snakestream.register.align import Image, StepResult, run_step, run_steps
from snakestream.register.global_stage import global_align
from snakestream.io.volumes import open_volume, write_volume
from snakestream.register.steps import normalize_steps

LINEAR_TOL = 0.01   # matrix entries of the 3x3 part
SHIFT_TOL = 0.1     # µm, translation entries

SPACING = np.array([1.0, 0.5, 0.5])


def blobs(shape=(40, 96, 96), spacing=SPACING, n=180, seed=0):
    """Nuclei-like test volume: gaussian blobs of 1.5 µm radius, z,y,x."""
    rng = np.random.default_rng(seed)
    grids = np.indices(shape).reshape(3, -1).T * spacing
    extent = np.array(shape) * spacing
    img = np.zeros(grids.shape[0], np.float32)
    for c in rng.uniform(0.08 * extent, 0.92 * extent, (n, 3)):
        near = np.all(np.abs(grids - c) < 5, axis=1)
        img[near] += np.exp(-((grids[near] - c) ** 2).sum(1) / (2 * 1.5 ** 2))
    return img.reshape(shape)


def pulled(fix, matrix, gain=0.8, offset=0.1):
    """Moving image such that moving(A @ x) = fixed(x) (+ intensity change)."""
    f = fix.to_sitk()
    out = sitk.Resample(f, f, affine_to_sitk(np.linalg.inv(matrix)), sitk.sitkLinear, 0.0)
    return Image(sitk.GetArrayFromImage(out) * gain + offset, fix.spacing)


def rotated(deg, translation):
    """4x4 affine: rotation by ``deg`` about z through the origin, then ``translation`` (µm)."""
    return about_centre(rotation_z(deg), np.asarray(translation, float), np.zeros(3))


def assert_matrix_close(found, truth):
    assert np.abs(found[:3, :3] - truth[:3, :3]).max() < LINEAR_TOL, np.round(found, 4)
    assert np.abs(found[:3, 3] - truth[:3, 3]).max() < SHIFT_TOL, np.round(found, 4)


STEP = {"alignment_spacing": 1.0, "shrink_factors": [2, 1], "smooth_sigmas": [2.0, 1.0],
        "optimizer_args": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 400}}


@pytest.fixture(scope="module")
def fixed():
    return Image(blobs(), SPACING)


def test_rigid_recovers_rotation_and_translation(fixed):
    truth = rotated(5.0, [1.2, -2.0, 1.5])
    steps = normalize_steps([["rigid", {**STEP, "initial_condition": "CENTER"}]], "t")
    (result,) = run_steps(steps, fixed, pulled(fixed, truth), log=lambda m: None)
    assert result.qc["status"] == "ok"
    assert_matrix_close(result.parameters.reshape(4, 4), truth)


def test_rigid_then_affine_recovers_scale_and_shear(fixed):
    truth = rotated(3.0, [-1.0, 1.5, 2.0])
    truth[:3, :3] = truth[:3, :3] @ np.array([[1.03, 0, 0], [0, 0.98, 0.02], [0, 0, 1.02]])
    steps = normalize_steps([["rigid", {**STEP, "initial_condition": "CENTER"}],
                             ["affine", STEP]], "t")
    results = run_steps(steps, fixed, pulled(fixed, truth), log=lambda m: None)
    found = compose_affines(*[r.parameters.reshape(4, 4) for r in results])
    assert_matrix_close(found, truth)


def test_global_stage_reads_volumes_and_downsamples(tmp_path, fixed):
    truth = rotated(-4.0, [0.8, 2.5, -1.5])
    write_volume(str(tmp_path / "fix.zarr"), fixed.data, SPACING, dataset="s0")
    write_volume(str(tmp_path / "mov.h5"), pulled(fixed, truth).data, SPACING, dataset="ch0")
    fix = open_volume(str(tmp_path / "fix.zarr"), "s0")
    mov = open_volume(str(tmp_path / "mov.h5"), "ch0")
    steps = normalize_steps([["rigid", {**STEP, "initial_condition": "CENTER"}],
                             ["affine", STEP]], "t")
    affine, qc = global_align(steps, fix, mov, log=lambda m: None)
    assert_matrix_close(affine, truth)
    assert qc[-1]["ncc_after"] > qc[0]["ncc_before"]


def test_moving_initial_transform_is_applied_after_the_step(fixed):
    """x -> static(new(x)): the step finds only what the static transform left."""
    truth = rotated(4.0, [0.5, 1.0, -1.0])
    static = np.eye(4)
    static[:3, 3] = [0.5, 1.0, -1.0]
    steps = normalize_steps([["affine", STEP]], "t")
    (result,) = run_steps(steps, fixed, pulled(fixed, truth),
                          static=[StepResult("g", "affine", static.ravel())], log=lambda m: None)
    assert_matrix_close(static @ result.parameters.reshape(4, 4), truth)


def test_failed_step_falls_back_and_says_why(fixed):
    flat = Image(np.zeros_like(fixed.data), SPACING)
    (name, params), = normalize_steps([["affine", STEP]], "t")
    result = run_step(name, params, fixed, flat)
    assert result.qc["status"] == "fallback"
    assert result.qc["reason"]
    assert np.all(np.isfinite(result.parameters))


def test_deform_recovers_smooth_local_motion(fixed):
    """A smooth displacement is recovered far better than by the identity."""
    import scipy.ndimage as ndi

    z, y, x = np.indices(fixed.data.shape) * SPACING[:, None, None, None]
    d = 0.8 * np.sin(2 * np.pi * y / 48.0) * np.cos(2 * np.pi * x / 48.0)  # µm, along x
    moving = ndi.map_coordinates(fixed.data, [z / SPACING[0], y / SPACING[1],
                                              (x - d) / SPACING[2]], order=1)
    mov = Image(moving, SPACING)
    (name, params), = normalize_steps([["deform", {
        "control_point_spacing": 8.0, "shrink_factors": [1], "smooth_sigmas": [0.5],
        "metric": "C", "sampling_percentage": 0.1,
        "optimizer_args": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 100}}]],
        "t")
    result = run_step(name, params, fixed, mov, seed=3)
    assert result.qc["status"] == "ok" and result.kind == "bspline"
    field = displacement_on_grid(result.to_sitk(), (0, 0, 0), fixed.data.shape, SPACING)
    inner = (slice(5, -5), slice(16, -16), slice(16, -16))
    # moving(x) = fixed(x - d): the point x in fixed sits at x + d(x) in moving
    err = np.abs(field[inner][..., 2] - d[inner])
    assert np.median(err) < 0.2 * np.median(np.abs(d[inner]))  # 0.05 µm of 0.25 µm


def test_a_step_logs_its_levels_and_iterations_while_it_runs(fixed):
    """log_every: one line per pyramid level as it starts, one every N iterations with
    the metric; the same result as without the lines."""
    truth = rotated(3.0, [1.0, -1.0, 0.5])
    steps = normalize_steps([["rigid", {**STEP, "initial_condition": "CENTER"}]], "t")
    lines = []
    (watched,) = run_steps(steps, fixed, pulled(fixed, truth), log=lines.append, log_every=10)
    (quiet,) = run_steps(steps, fixed, pulled(fixed, truth), log=lambda m: None)
    assert np.allclose(watched.parameters, quiet.parameters, rtol=0, atol=1e-9)  # ITK: ~1e-14
    levels = [x for x in lines if "pyramid level" in x]
    assert levels == [x for x in levels if x.startswith("rigid: ")]
    assert [x.split("pyramid level ")[1].split(" (")[0] for x in levels] == ["1 of 2", "2 of 2"]
    iterations = [re.search(r"level (\d) iteration (\d+) metric (\S+) at ([\d.]+) s", x)
                  for x in lines if " iteration " in x]
    assert iterations and all(iterations)
    assert {int(m.group(2)) % 10 for m in iterations} == {0}
    seconds = [float(m.group(4)) for m in iterations]
    assert seconds == sorted(seconds)
    metrics = [float(m.group(3)) for m in iterations]
    assert metrics[-1] < metrics[0], "the metric (lower is better) goes down as it runs"
    assert lines[-1].startswith("step rigid: "), "the step's summary line comes last"
