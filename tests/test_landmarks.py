"""Landmark files (BigWarp's landmarks.csv, a plain CSV in µm or voxels, the demo's .npz)
give the TRE of each stage, in qc/landmarks.tsv and qc/landmarks_points.tsv."""
import csv

import numpy as np
import pandas as pd
import pytest

from conftest import about_centre, rotation_z
from snakestream.errors import InputError
from snakestream.qc.landmarks import Frame, read_landmarks, tre_tables
from snakestream.qc.metrics import stage_tre

FIX_SPACING = np.array([2.0, 0.5, 0.25])  # µm, z, y, x: anisotropic, every axis different
MOV_SPACING = np.array([1.0, 0.3, 0.6])
TRUE_AFFINE = about_centre(rotation_z(4.0) * 1.02, np.array([1.5, -3.0, 2.0]),
                           np.array([20.0, 30.0, 30.0]))


@pytest.fixture(scope="module")
def pairs():
    """Fixed points (µm, z, y, x) and their moving positions under TRUE_AFFINE."""
    rng = np.random.default_rng(7)
    fixed = rng.uniform([2, 5, 5], [40, 60, 60], size=(25, 3))
    moving = fixed @ TRUE_AFFINE[:3, :3].T + TRUE_AFFINE[:3, 3]
    return fixed, moving


def _estimate():
    """An affine near the truth (what a registration would find), and a small smooth field."""
    estimate = TRUE_AFFINE.copy()
    estimate[:3, 3] += [0.3, -0.2, 0.4]
    z, y, x = np.meshgrid(*[np.arange(n) for n in (12, 30, 30)], indexing="ij")
    field = np.stack([0.1 * np.sin(y / 5), 0.2 * np.cos(x / 7), 0.05 * z], -1).astype(np.float32)
    return estimate, field, (4.0, 2.5, 2.5)


def _expected(fixed, moving):
    estimate, field, spacing = _estimate()
    return stage_tre(fixed, moving, estimate, field, spacing)


def _assert_same_tre(stages, expected):
    assert stages.stage.tolist() == ["before", "global", "blocks"]
    for row in stages.itertuples():
        want = expected[row.stage]
        assert row.n == want["n"]
        np.testing.assert_allclose([row.median_um, row.p95_um, row.max_um],
                                   [want["median"], want["p95"], want["max"]], rtol=1e-12)


def _write_bigwarp(path, fixed, moving, *, inactive_at=None):
    """BigWarp's landmarks.csv as BigWarp saves it: name, active, moving x y z, fixed x y z."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL)
        for i, (f, m) in enumerate(zip(fixed, moving)):
            if i == inactive_at:  # a rejected landmark, far off: it must not count
                w.writerow([f"Pt-{i}-off", "false", 999.0, -999.0, 5.0, 1.0, 2.0, 3.0])
            w.writerow([f"Pt-{i}", "true", m[2], m[1], m[0], f[2], f[1], f[0]])


def test_bigwarp_file_with_an_inactive_row(tmp_path, pairs):
    fixed, moving = pairs
    path = tmp_path / "landmarks.csv"
    _write_bigwarp(path, fixed, moving, inactive_at=5)
    found = read_landmarks(path)
    assert len(found.names) == len(fixed) and "Pt-5-off" not in found.names
    np.testing.assert_allclose(found.fixed, fixed, rtol=1e-15)   # x, y, z read back as z, y, x
    np.testing.assert_allclose(found.moving, moving, rtol=1e-15)
    estimate, field, spacing = _estimate()
    stages, points = tre_tables(found, estimate, field, spacing)
    _assert_same_tre(stages, _expected(fixed, moving))
    np.testing.assert_allclose(points.error_before_um, np.linalg.norm(fixed - moving, axis=1))
    assert points.name.tolist() == found.names


def test_plain_csv_in_um(tmp_path, pairs):
    fixed, moving = pairs
    table = pd.DataFrame({f"{image}_{ax}": pts[:, k] for image, pts in (("moving", moving),
                          ("fixed", fixed)) for k, ax in enumerate("zyx")})
    table.to_csv(tmp_path / "lm.csv", index=False)
    found = read_landmarks(tmp_path / "lm.csv")
    estimate, field, spacing = _estimate()
    _assert_same_tre(tre_tables(found, estimate, field, spacing)[0], _expected(fixed, moving))


def test_plain_csv_in_voxels_of_each_anisotropic_image(tmp_path, pairs):
    """Voxel coordinates of the fixed and of the moving grid (each its own spacing), by
    landmarks_units or by column suffix, give the µm landmarks and so the same TRE."""
    fixed, moving = pairs
    vox = {"fixed": fixed / FIX_SPACING, "moving": moving / MOV_SPACING}
    frames = {"fixed": Frame(FIX_SPACING), "moving": Frame(MOV_SPACING)}
    pd.DataFrame({f"{image}_{ax}": vox[image][:, k] for image in vox
                  for k, ax in enumerate("zyx")}).to_csv(tmp_path / "vox.csv", index=False)
    found = read_landmarks(tmp_path / "vox.csv", units="voxels", **frames)
    np.testing.assert_allclose(found.fixed, fixed, rtol=1e-12)
    np.testing.assert_allclose(found.moving, moving, rtol=1e-12)
    estimate, field, spacing = _estimate()
    _assert_same_tre(tre_tables(found, estimate, field, spacing)[0], _expected(fixed, moving))
    # suffixes: fixed in voxels, moving in µm, whatever landmarks_units says
    mixed = pd.DataFrame({**{f"fixed_{ax}_vox": vox["fixed"][:, k] for k, ax in enumerate("zyx")},
                          **{f"moving_{ax}_um": moving[:, k] for k, ax in enumerate("zyx")}})
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    found = read_landmarks(tmp_path / "mixed.csv", units="um", **frames)
    np.testing.assert_allclose(found.fixed, fixed, rtol=1e-12)
    np.testing.assert_allclose(found.moving, moving, rtol=1e-12)
    # read as µm by mistake, the points are not the landmarks: the conversion is real
    wrong = read_landmarks(tmp_path / "vox.csv", units="um")
    assert np.abs(wrong.fixed - fixed).max() > 1.0


def test_a_table_in_neither_format_is_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError) as err:
        read_landmarks(path)
    assert str(path) in str(err.value) and "fixed_z" in str(err.value)
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)
