"""RnR-ExM outputs: the submission's voxel displacements and the challenge's label scores."""
import h5py
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from snakestream.fields.challenge import voxel_displacement, write_submission
from snakestream.qc.labels import dice_scores, hd95_voxels, label_counts, label_scores

FIX_SPACING = np.array([2.0, 0.5, 0.5])   # anisotropic fixed grid
MOV_SPACING = np.array([1.0, 0.25, 0.5])  # a different moving grid


def _affine():
    a = np.eye(4)
    a[:3, :3] = [[1.0, 0.02, 0.0], [0.0, 0.98, 0.03], [-0.01, 0.0, 1.02]]
    a[:3, 3] = [1.5, -2.0, 0.75]
    return a


def test_voxel_displacement_is_moving_index_minus_fixed_index():
    affine, origin = _affine(), np.array([3.0, -1.0, 2.0])
    disp = voxel_displacement((2, 3, 4), (3, 5, 6), FIX_SPACING, MOV_SPACING, affine,
                              mov_origin=origin)
    i = np.stack(np.meshgrid(*(np.arange(a, a + n) for a, n in zip((2, 3, 4), (3, 5, 6))),
                             indexing="ij"), -1)
    x = i * FIX_SPACING
    expect = ((x @ affine[:3, :3].T + affine[:3, 3]) - origin) / MOV_SPACING - i
    assert disp.dtype == np.float32 and disp.shape == (3, 5, 6, 3)
    assert np.allclose(disp, expect, atol=1e-4)


def test_submission_warps_like_the_challenge_evaluator(tmp_path):
    """Read back with h5py and applied with map_coordinates as evaluation.py does."""
    shape, rng = (12, 20, 22), np.random.default_rng(0)
    moving = rng.random((26, 44, 24)).astype(np.float32)
    affine = _affine()
    field = np.zeros(shape + (3,), np.float32)
    field[..., 1] = 0.3 * np.sin(np.arange(shape[2]) / 4.0)  # µm, varies along x
    path = tmp_path / "mouse_test.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pair6", data=np.zeros(3))       # another pair: kept
    write_submission(str(path), "pair5", shape, FIX_SPACING, MOV_SPACING, affine,
                     field=_ZarrLike(field, FIX_SPACING), slab_z=5)
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["pair5", "pair6"]
        ds = f["pair5"]
        assert ds.dtype == np.float16 and ds.shape == shape + (3,)
        assert ds.compression == "gzip"
        disp = ds[...].astype(np.float32)
    identity = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    warped = map_coordinates(moving, identity + disp.transpose(3, 0, 1, 2), order=1)
    pts = np.stack(identity, -1) * FIX_SPACING + field
    ref = map_coordinates(moving, ((pts @ affine[:3, :3].T + affine[:3, 3]) / MOV_SPACING)
                          .transpose(3, 0, 1, 2), order=1)
    assert np.abs(warped - ref).max() < 0.02  # float16 rounding of ~20-voxel values


class _ZarrLike(np.ndarray):
    """An in-memory field with the ``attrs['spacing']`` of a stored deform.zarr."""

    def __new__(cls, array, spacing):
        obj = np.asarray(array).view(cls)
        obj.attrs = {"spacing": list(spacing)}
        return obj


def _ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.sum((grid - centre) ** 2, -1) <= radius ** 2


def test_dice_and_hd95_of_known_shapes():
    shape = (30, 40, 40)
    fixed = np.zeros(shape, np.uint16)
    fixed[_ball(shape, (15, 20, 12), 6)] = 3
    fixed[_ball(shape, (15, 20, 28), 5)] = 9
    warped = np.zeros_like(fixed)
    warped[_ball(shape, (15, 20, 14), 6)] = 3          # shifted by 2 voxels
    warped[_ball(shape, (15, 20, 28), 5)] = 9          # exact
    rows, summary = label_scores(fixed, warped, {0, 3, 9, 11}, slab_z=7)
    by = {r["label"]: r for r in rows}
    a, b = fixed == 3, warped == 3
    assert by[3]["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert by[9]["dice"] == 1.0 and by[9]["hd95_vox"] == 0.0
    assert 1.0 <= by[3]["hd95_vox"] <= 2.0 + 1e-9     # a 2-voxel shift
    assert summary["labels"] == 2
    assert summary["dice_mean"] == pytest.approx((by[3]["dice"] + 1.0) / 2)
    assert summary["dice_p30"] == pytest.approx(np.percentile([by[3]["dice"], 1.0], 30))


def test_labels_absent_from_the_moving_image_are_not_scored_and_lost_ones_get_the_diagonal():
    shape = (10, 12, 12)
    fixed = np.zeros(shape, np.uint8)
    fixed[2:5, 2:5, 2:5], fixed[6:9, 6:9, 6:9] = 1, 2
    warped = np.zeros_like(fixed)
    counts = label_counts(fixed, warped, slab_z=3)
    assert dice_scores(counts, {0, 1}) == {1: 0.0}            # 2 is not in the moving image
    rows, _ = label_scores(fixed, warped, {1})
    assert rows[0]["hd95_vox"] == pytest.approx(np.sqrt(10 ** 2 + 12 ** 2 + 12 ** 2))
    assert hd95_voxels(fixed == 1, warped == 1) == float("inf")
