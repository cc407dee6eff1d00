"""The sparse-Jacobian B-spline engine: same grid as SimpleITK, recovers known motion."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk

from snakestream.register import bspline as bs
from snakestream.fields import transform as tf
from snakestream.register.align import Image, StepResult, run_step
from snakestream.register.bspline_fit import sample_fixed
from snakestream.errors import ConfigError
from snakestream.register.steps import normalize_steps

from test_align import SPACING, blobs

DEFORM = {"control_point_spacing": 8.0, "shrink_factors": [1], "smooth_sigmas": [0.5],
          "metric": "C", "sampling_percentage": 0.1,
          "optimizer_args": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 100}}


def deform_step(**change):
    (name, params), = normalize_steps([["deform", {**DEFORM, **change}]], "t")
    return name, params


@pytest.fixture(scope="module")
def pair():
    """Fixed blobs and a moving image pulled by a smooth x displacement d (µm)."""
    fixed = Image(blobs(), SPACING)
    z, y, x = np.indices(fixed.data.shape) * SPACING[:, None, None, None]
    d = 0.8 * np.sin(2 * np.pi * y / 48.0) * np.cos(2 * np.pi * x / 48.0)
    moving = ndi.map_coordinates(fixed.data, [z / SPACING[0], y / SPACING[1],
                                              (x - d) / SPACING[2]], order=1)
    return fixed, Image(moving * 0.7 + 0.2, SPACING), d


def field_error(result, fixed, d):
    field = tf.displacement_on_grid(result.to_sitk(), (0, 0, 0), fixed.data.shape, SPACING)
    inner = (slice(5, -5), slice(16, -16), slice(16, -16))
    return np.median(np.abs(field[inner][..., 2] - d[inner])), np.median(np.abs(d[inner]))


def test_weights_reproduce_simpleitk_bspline_displacements():
    img = sitk.GetImageFromArray(np.zeros((20, 30, 40), np.float32))
    img.SetSpacing((0.4, 0.5, 1.0))
    img.SetOrigin((3.0, -2.0, 1.0))
    t = sitk.BSplineTransformInitializer(img, [4, 3, 2], order=3)
    rng = np.random.default_rng(1)
    params = rng.normal(0, 0.5, len(t.GetParameters()))
    t.SetParameters(params.tolist())
    extent = np.array([20, 30, 40]) * np.array([1.0, 0.5, 0.4])
    pts = np.array([1.0, -2.0, 3.0]) + rng.uniform(0, 1, (200, 3)) * (extent - 1)
    W = bs.weight_matrix(pts, t.GetFixedParameters())
    n = W.shape[1]
    coef = np.stack([params[2 * n:], params[n:2 * n], params[:n]], axis=1)  # z, y, x
    ours = W @ coef
    itk = np.array([np.array(t.TransformPoint(p[::-1].tolist()))[::-1] - p for p in pts])
    assert np.abs(ours - itk).max() < 1e-9
    assert np.array_equal(bs.to_sitk_order(coef), params)


@pytest.mark.parametrize("metric", ["C", "MS", "MMI"])
def test_sparse_engine_recovers_smooth_motion(pair, metric):
    fixed, moving, d = pair
    change = {"metric": metric}
    if metric == "MS":  # needs equal intensities; its gradients are small (as in ITK)
        moving = Image((moving.data - 0.2) / 0.7, SPACING)
        change["optimizer_args"] = {**DEFORM["optimizer_args"],
                                    "gradientMagnitudeTolerance": 1e-6}
    result = run_step(*deform_step(**change), fixed, moving, seed=3)
    assert result.qc["engine"] == "sparse" and result.qc["status"] == "ok", result.qc
    err, size = field_error(result, fixed, d)
    assert err < 0.2 * size, (err, size)


def test_sparse_and_simpleitk_engines_agree(pair):
    fixed, moving, d = pair
    sparse = run_step(*deform_step(), fixed, moving, seed=3)
    itk = run_step(*deform_step(engine="itk"), fixed, moving, seed=3)
    assert itk.qc["engine"] == "itk"
    # same mesh (ITK then re-fits the grid to the voxel-centre extent at level 0)
    assert np.array_equal(sparse.fixed_parameters[:3], itk.fixed_parameters[:3])
    err_sparse, size = field_error(sparse, fixed, d)
    err_itk, _ = field_error(itk, fixed, d)
    assert err_sparse < max(1.5 * err_itk, 0.1 * size), (err_sparse, err_itk)


def test_sparse_engine_is_deterministic_and_uses_the_static_affine(pair):
    fixed, moving, d = pair
    shift = np.eye(4)
    shift[:3, 3] = [0.0, 1.5, 0.0]  # moving content sits 1.5 µm further along y
    moved = Image(moving.data, SPACING, origin=np.array([0.0, 1.5, 0.0]))
    static = [StepResult("g", "affine", shift.ravel())]
    a = run_step(*deform_step(), fixed, moved, static, seed=5)
    b = run_step(*deform_step(), fixed, moved, static, seed=5)
    assert np.array_equal(a.parameters, b.parameters)
    err, size = field_error(a, fixed, d)
    assert err < 0.2 * size


def test_fixed_mask_limits_the_samples():
    data = np.arange(1000, dtype=float).reshape(10, 10, 10)
    mask = np.zeros(data.shape, bool)
    mask[2:4, 3:5, 4:6] = True
    img = Image(data, np.ones(3), mask=mask)
    _, params = deform_step(sampling_percentage=0.5)
    points, values = sample_fixed(img, data, params, seed=0)
    assert len(points) == 4 and np.all(mask[tuple(points.astype(int).T)])


def test_engine_choice_is_checked_and_recorded(pair):
    gd = {"optimizer": "GD", "optimizer_args": {"learningRate": 0.25, "numberOfIterations": 5}}
    with pytest.raises(ConfigError, match="sparse engine does not do optimizer GD"):
        deform_step(engine="sparse", **gd)
    fixed, moving, _ = pair
    result = run_step(*deform_step(**gd), fixed, moving, seed=3)
    assert result.qc["engine"] == "itk" and "optimizer GD" in result.qc["engine_reason"]
