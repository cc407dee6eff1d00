"""Tests for snakestream.register.features: blobs, descriptors, RANSAC, searches.

All data are synthetic and made here: a nuclei-like volume of gaussian blobs,
and a moving volume rendered by pull sampling through a known fixed->moving
affine on a grid with a DIFFERENT spacing, so that moving(A @ x) ~ fixed(x).
"""

import re

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import about_centre, box_corners, extent, render_blobs, rotation_z
from snakestream.errors import AlignmentError
from snakestream.grid.geometry import apply_affine
from snakestream.qc.metrics import tre
from snakestream.register import features as F

FIX_SPACING = np.array([1.0, 0.5, 0.5])
MOV_SPACING = np.array([1.2, 0.6, 0.6])
FIX_SHAPE = (48, 128, 128)
BLOB_RADIUS = 2.5


# ---------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------

def make_blobs(seed, n=400, shape=FIX_SHAPE, spacing=FIX_SPACING):
    """Random blob centres (µm), sigmas (µm) and amplitudes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n, 3)) * extent(shape, spacing)
    return centres, rng.uniform(1.0, 1.8, n), rng.uniform(0.5, 1.5, n)


def render(blobs, shape=FIX_SHAPE, spacing=FIX_SPACING):
    """Sum of isotropic gaussians evaluated exactly on the voxel grid."""
    return render_blobs(*blobs, shape, spacing)


def pull(fixed, A, mov_shape, fix_spacing=FIX_SPACING, mov_spacing=MOV_SPACING):
    """Moving image with moving(y) = fixed(inv(A) @ y) (cubic, zero outside)."""
    Ainv = np.linalg.inv(A)
    matrix = np.diag(1 / fix_spacing) @ Ainv[:3, :3] @ np.diag(mov_spacing)
    offset = Ainv[:3, 3] / fix_spacing
    return ndi.affine_transform(fixed, matrix, offset, output_shape=mov_shape, order=3)


def restyle(image, seed):
    """Intensity change (gain, gamma, offset) plus noise."""
    rng = np.random.default_rng(seed)
    out = 0.6 * np.clip(image, 0, None) ** 0.9 + 0.2
    return (out + rng.normal(0, 0.05, image.shape)).astype(np.float32)


def covering_shape(A, fix_shape=FIX_SHAPE):
    """Moving grid shape containing the image of the whole fixed box."""
    moved = apply_affine(A, box_corners(np.zeros(3), extent(fix_shape, FIX_SPACING)))
    assert moved.min() >= 0, "translation must keep the moved box at positive coordinates"
    return tuple(np.ceil(moved.max(axis=0) / MOV_SPACING).astype(int) + 2)


@pytest.fixture(scope="module")
def scene():
    """Fixed, moving and the true affine: 18 deg about z, 22 % FOV shift, 3 % scale."""
    blobs = make_blobs(seed=1)
    clean = render(blobs)
    fov = extent(FIX_SHAPE, FIX_SPACING)
    L = rotation_z(18.0) @ np.diag([1.0, 1.03, 0.98])
    A = about_centre(L, np.array([0.15, 0.22, 0.2]) * fov, fov / 2)
    mov = restyle(pull(clean, A, covering_shape(A)), seed=3)
    fix = clean + np.random.default_rng(2).normal(0, 0.05, FIX_SHAPE).astype(np.float32)
    return dict(fix=fix, mov=mov, A=A, centres=blobs[0])


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------

def test_detect_blobs_finds_centres_on_anisotropic_grid(scene):
    points, strengths = F.detect_blobs(scene["fix"], FIX_SPACING, BLOB_RADIUS)
    assert points.shape[1] == 3 and len(points) == len(strengths) > 200
    assert np.all(np.diff(strengths) <= 0)
    d = np.min(np.linalg.norm(points[:, None] - scene["centres"][None], axis=2), axis=1)
    assert np.median(d) < 0.3  # µm; sub-voxel refined
    few, _ = F.detect_blobs(scene["fix"], FIX_SPACING, BLOB_RADIUS, max_points=10)
    assert np.array_equal(few, points[:10])


def test_detect_blobs_mask_and_border(scene):
    mask = np.zeros(FIX_SHAPE, bool)
    mask[:, :64] = True
    points, _ = F.detect_blobs(scene["fix"], FIX_SPACING, BLOB_RADIUS, mask=mask)
    assert len(points) > 0 and np.all(points[:, 1] <= 64 * 0.5)
    inner, _ = F.detect_blobs(scene["fix"], FIX_SPACING, BLOB_RADIUS, exclude_border_um=5.0)
    upper = extent(FIX_SHAPE, FIX_SPACING) - 5.0
    assert np.all((inner >= 5.0) & (inner <= upper))


def test_descriptors_comparable_across_spacings(scene):
    """The same physical points described in both images correlate strongly."""
    A = scene["A"]
    pf, _ = F.detect_blobs(scene["fix"], FIX_SPACING, BLOB_RADIUS, exclude_border_um=10, max_points=50)
    df = F.describe(scene["fix"], FIX_SPACING, pf, 3 * BLOB_RADIUS)
    dm = F.describe(scene["mov"], MOV_SPACING, apply_affine(A, pf), 3 * BLOB_RADIUS, linear=A[:3, :3])
    assert df.shape == (len(pf), 343)
    np.testing.assert_allclose(np.linalg.norm(df, axis=1), 1, atol=1e-5)
    assert np.median(np.sum(df * dm, axis=1)) > 0.95


def test_match_mutual_keeps_only_mutual_best():
    rng = np.random.default_rng(0)
    d = F._normalise_rows(rng.normal(size=(20, 50)))
    perm = rng.permutation(20)
    i, j = F.match_mutual(d, d[perm], min_correlation=0.7)
    assert len(i) == 20 and np.array_equal(perm[j], i)
    i, j = F.match_mutual(d, -d, min_correlation=0.7)
    assert len(i) == 0


def test_ransac_affine_with_outliers():
    rng = np.random.default_rng(0)
    pf = rng.uniform(0, 100, (200, 3))
    A = about_centre(rotation_z(30) @ np.diag([1.1, 0.9, 1.0]), np.array([5.0, -20, 10]), np.full(3, 50.0))
    pm = apply_affine(A, pf) + rng.normal(0, 0.1, pf.shape)
    bad = rng.random(200) < 0.6
    pm[bad] = rng.uniform(0, 100, (bad.sum(), 3))
    est, inliers = F.ransac_affine(pf, pm, threshold_um=1.0, seed=1)
    assert np.array_equal(inliers, ~bad)
    assert np.abs(apply_affine(est, pf) - apply_affine(A, pf)).max() < 0.2
    with pytest.raises(AlignmentError, match="implausibl"):
        F.ransac_affine(pf, apply_affine(about_centre(3 * np.eye(3), np.zeros(3), np.zeros(3)), pf), 1.0)


# ---------------------------------------------------------------------------
# the feature step
# ---------------------------------------------------------------------------

def test_ransac_align_recovers_affine(scene):
    est = F.ransac_align(scene["fix"], scene["mov"], FIX_SPACING, MOV_SPACING, BLOB_RADIUS)
    error = tre(apply_affine(est, scene["centres"]), apply_affine(scene["A"], scene["centres"]))
    assert error["median"] < 0.5  # one fixed voxel in y/x
    assert error["p95"] < 1.0


def test_ransac_align_is_deterministic(scene):
    args = (scene["fix"], scene["mov"], FIX_SPACING, MOV_SPACING, BLOB_RADIUS)
    assert F.ransac_align(*args, seed=7).tobytes() == F.ransac_align(*args, seed=7).tobytes()


def test_ransac_align_uses_initial_for_large_rotation():
    """Beyond the descriptors' rotation tolerance a known initial affine helps."""
    fix = render(make_blobs(seed=4))
    fov = extent(FIX_SHAPE, FIX_SPACING)
    A = about_centre(rotation_z(40.0), np.array([0.1, 0.25, 0.25]) * fov, fov / 2)
    mov = restyle(pull(fix, A, covering_shape(A)), seed=5)
    initial = about_centre(rotation_z(35.0), np.zeros(3), fov / 2)
    est = F.ransac_align(fix, mov, FIX_SPACING, MOV_SPACING, BLOB_RADIUS, initial=initial, where="block 3")
    centres = make_blobs(seed=4)[0]
    assert tre(apply_affine(est, centres), apply_affine(A, centres))["median"] < 0.5


def test_empty_image_raises_too_few_points(scene):
    empty = np.full(FIX_SHAPE, 3.0, np.float32)
    with pytest.raises(AlignmentError, match="too few points in the fixed image") as err:
        F.ransac_align(empty, scene["mov"], FIX_SPACING, MOV_SPACING, BLOB_RADIUS, where="block 0")
    assert str(err.value).startswith("block 0:") and "\n" not in str(err.value)


def test_unrelated_images_raise(scene):
    other = restyle(render(make_blobs(seed=99), FIX_SHAPE), seed=9)
    args = (scene["fix"], other, FIX_SPACING, FIX_SPACING, BLOB_RADIUS)
    with pytest.raises(AlignmentError, match="too few (mutual matches|RANSAC inliers)"):
        F.ransac_align(*args)
    # accepting every mutual match leaves it to RANSAC to refuse
    with pytest.raises(AlignmentError, match="too few RANSAC inliers"):
        F.ransac_align(*args, match_threshold=0.0)


# ---------------------------------------------------------------------------
# searches
# ---------------------------------------------------------------------------

def test_phase_correlation_recovers_large_translation(scene):
    fov = extent(FIX_SHAPE, FIX_SPACING)
    t = np.array([-0.3, 0.3, -0.3]) * fov
    A = np.eye(4)
    A[:3, 3] = t
    clean = scene["fix"]
    mov = restyle(pull(clean, A, tuple(np.round(fov / MOV_SPACING).astype(int) + 1)), seed=6)
    est = F.phase_correlation_translation(clean, mov, FIX_SPACING, MOV_SPACING)
    np.testing.assert_array_equal(est[:3, :3], np.eye(3))
    assert np.all(np.abs(est[:3, 3] - t) < MOV_SPACING)  # within one coarse voxel


def test_random_affine_search_improves_and_is_deterministic(scene):
    fov = extent(FIX_SHAPE, FIX_SPACING)
    A = about_centre(rotation_z(6.0), np.array([2.0, 5.0, -4.0]), fov / 2)
    mov = restyle(pull(scene["fix"], A, tuple(np.round(fov / MOV_SPACING).astype(int) + 1)), seed=8)
    score = F.ncc_score(scene["fix"], mov, FIX_SPACING, MOV_SPACING, nsamples=20000, smooth_um=2.0)
    assert score(A) < score(np.eye(4))
    kwargs = dict(iterations=150, max_translation_um=8.0, max_rotation_rad=0.15, seed=3)
    best, value = F.random_affine_search(scene["fix"], mov, FIX_SPACING, MOV_SPACING, score, **kwargs)
    assert value < score(np.eye(4)) and value == pytest.approx(score(best))
    again, value2 = F.random_affine_search(scene["fix"], mov, FIX_SPACING, MOV_SPACING, score, **kwargs)
    assert again.tobytes() == best.tobytes() and value2 == value


def test_ransac_align_logs_its_stages(scene):
    lines = []
    F.ransac_align(scene["fix"], scene["mov"], FIX_SPACING, MOV_SPACING, BLOB_RADIUS,
                   where="global ransac", log=lines.append)
    assert all(x.startswith("global ransac: ") for x in lines) and len(lines) == 4
    blobs = re.search(r"(\d+) fixed and (\d+) moving blobs", lines[1])
    matches = int(re.search(r"(\d+) mutual matches", lines[2]).group(1))
    inliers = int(re.search(r"(\d+) inliers", lines[3]).group(1))
    assert 12 <= inliers <= matches <= min(int(blobs.group(1)), int(blobs.group(2)))
