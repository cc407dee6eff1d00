"""Global alignment that survives large round-to-round motion.

A generated pair: the same nuclei-like field seen by two rounds whose fields
of view are offset by 22 % (y, x) and 10 % (z) and rotated 18 degrees about z,
imaged at different voxel sizes (fixed 1.0 x 0.5 x 0.5 µm, moving
1.25 x 0.6 x 0.6 µm). Each image only sees its own field, as on a microscope,
so centres of mass say little about the offset. Intensity-only ``affine`` from
the ``CENTER`` start stalls; ``ransac`` + ``affine`` recovers the transform.
TRE is measured at the true nuclei centres inside the fixed field.
"""

import json
import os
import runpy
import struct
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, about_centre, box_corners, extent, render_blobs, rotation_z
from snakestream.grid.geometry import apply_affine
from snakestream.qc import overlay
from snakestream.qc.metrics import tre
from snakestream.register.similarity import ncc
from snakestream.register.align import Image, StepResult, run_step, run_steps
from snakestream.register.block_stage import block_status
from snakestream.grid.blocks import block_seed
from snakestream.register.global_stage import global_align
from snakestream.io.volumes import open_volume, write_volume
from snakestream.register.steps import normalize_steps

FIX_SHAPE = (40, 128, 128)
FIX_SPACING = np.array([1.0, 0.5, 0.5])
MOV_SPACING = np.array([1.25, 0.6, 0.6])
VOXEL = FIX_SPACING.min()  # µm; "one voxel" taken as the finest fixed voxel side
DEGREES = 18.0
SHIFT_FRACTION = np.array([0.10, 0.22, 0.22])  # of the field of view, z, y, x

AFFINE = {"alignment_spacing": 1.0, "shrink_factors": [2, 1], "smooth_sigmas": [2.0, 1.0],
          "optimizer_args": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 400}}
RANSAC = {"blob_radius": 2.5, "alignment_spacing": 1.0}


# ---------------------------------------------------------------------------
# generated pair
# ---------------------------------------------------------------------------

def make_pair(seed=0, fix_shape=FIX_SHAPE, fix_spacing=FIX_SPACING, mov_spacing=MOV_SPACING,
              degrees=DEGREES, shift_fraction=SHIFT_FRACTION, density=1 / 400.0):
    """Fixed and moving volumes of one blob field seen through a known affine.

    Parameters
    ----------
    seed : int
    fix_shape : (3,) int
    fix_spacing, mov_spacing : (3,) float, µm, z, y, x.
    degrees : float
        Rotation about z (about the fixed field's centre).
    shift_fraction : (3,) float
        Translation as a fraction of the fixed field of view, z, y, x.
    density : float
        Blobs per µm³.

    Returns
    -------
    fix, mov : float32 volumes (the moving grid covers the same µm extent as the
        fixed one, so only part of each image is seen by the other)
    truth : (4, 4) fixed -> moving affine, µm
    landmarks : (N, 3) blob centres (µm) at least 3 µm inside the fixed field
    """
    fs, ms = np.asarray(fix_spacing, float), np.asarray(mov_spacing, float)
    fov = extent(fix_shape, fs)
    truth = about_centre(rotation_z(degrees), np.asarray(shift_fraction) * fov, fov / 2)
    mov_shape = tuple(int(n) for n in np.round(fov / ms) + 1)
    seen_by_mov = apply_affine(np.linalg.inv(truth), box_corners(np.zeros(3), extent(mov_shape, ms)))
    lo = np.minimum(0, seen_by_mov.min(0)) - 5
    hi = np.maximum(fov, seen_by_mov.max(0)) + 5
    rng = np.random.default_rng(seed)
    n = int(np.prod(hi - lo) * density)
    centres = lo + rng.uniform(0, 1, (n, 3)) * (hi - lo)
    sigmas, amplitudes = rng.uniform(1.0, 1.8, n), rng.uniform(0.5, 1.5, n)
    fix = render_blobs(centres, sigmas, amplitudes, fix_shape, fs)
    mov = render_blobs(apply_affine(truth, centres), sigmas, amplitudes, mov_shape, ms)
    fix = fix + rng.normal(0, 0.05, fix.shape)
    mov = 0.6 * np.clip(mov, 0, None) ** 0.9 + 0.2 + rng.normal(0, 0.05, mov.shape)
    inside = np.all((centres >= 3) & (centres <= fov - 3), axis=1)
    return fix.astype(np.float32), mov.astype(np.float32), truth, centres[inside]


def median_tre(found, truth, landmarks):
    """Median distance (µm) between landmarks mapped by ``found`` and by ``truth``."""
    return tre(apply_affine(found, landmarks), apply_affine(truth, landmarks))["median"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    fix, mov, truth, landmarks = make_pair()
    folder = tmp_path_factory.mktemp("pair")
    write_volume(str(folder / "fix.zarr"), fix, FIX_SPACING, dataset="s0")
    write_volume(str(folder / "mov.h5"), mov, MOV_SPACING, dataset="ch0")
    return SimpleNamespace(fix=fix, mov=mov, truth=truth, landmarks=landmarks,
                           fix_spec={"path": str(folder / "fix.zarr"), "dataset": "s0"},
                           mov_spec={"path": str(folder / "mov.h5"), "dataset": "ch0"})


def run_rule_script(pair, steps, out, threads=1):
    """Run scripts/global_align.py as Snakemake would (injected ``snakemake`` object).

    The script pins ITK/BLAS threads for the process; they are restored afterwards.
    """
    out.mkdir(parents=True, exist_ok=True)
    snakemake = SimpleNamespace(
        params=SimpleNamespace(fixed=pair.fix_spec, moving=pair.mov_spec,
                               steps=normalize_steps(steps, "global.steps"), itk_threads=threads),
        output=SimpleNamespace(affine=str(out / "affine.mat"), qc=str(out / "qc.json"),
                               overlay=str(out / "overlay.png")),
        log=[str(out / "global_align.log")], threads=threads)
    itk_threads, env = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), dict(os.environ)
    try:
        runpy.run_path(str(ROOT / "scripts" / "global_align.py"),
                       init_globals={"snakemake": snakemake})
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
        os.environ.clear()
        os.environ.update(env)
    return np.loadtxt(out / "affine.mat"), json.loads((out / "qc.json").read_text())


@pytest.fixture(scope="module")
def ransac_run(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("ransac_run")
    affine, qc = run_rule_script(pair, [["ransac", RANSAC], ["affine", AFFINE]], out)
    return SimpleNamespace(out=out, affine=affine, qc=qc)


# ---------------------------------------------------------------------------
# the feature makes the difference
# ---------------------------------------------------------------------------

def test_pair_is_a_large_offset_case(pair):
    fov = extent(FIX_SHAPE, FIX_SPACING)
    shift = pair.truth[:3, 3] - (fov / 2 - pair.truth[:3, :3] @ fov / 2)
    assert np.all(np.abs(shift[1:]) >= 0.2 * fov[1:]) and DEGREES >= 15
    assert not np.allclose(FIX_SPACING, MOV_SPACING)
    assert len(pair.landmarks) > 100


def test_affine_from_center_alone_fails(pair):
    fix, mov = open_volume(**pair.fix_spec), open_volume(**pair.mov_spec)
    steps = normalize_steps([["affine", {**AFFINE, "initial_condition": "CENTER"}]], "t")
    affine, qc = global_align(steps, fix, mov, threads=2, log=lambda m: None)
    assert median_tre(affine, pair.truth, pair.landmarks) > 10 * VOXEL
    assert qc[0]["ncc_after"] < 0.1  # stalls near zero correlation


def test_ransac_then_affine_recovers_the_transform(pair, ransac_run):
    assert median_tre(ransac_run.affine, pair.truth, pair.landmarks) < VOXEL
    ransac_qc, affine_qc = ransac_run.qc["steps"]
    assert ransac_qc["step"] == "ransac" and ransac_qc["status"] == "ok"
    assert ransac_qc["metric"] == "-NCC" and ransac_qc["metric_after"] < ransac_qc["metric_before"]
    assert ransac_qc["ncc_before"] < 0.1 < 0.3 < ransac_qc["ncc_after"]
    assert affine_qc["status"] == "ok" and affine_qc["ncc_before"] == ransac_qc["ncc_after"]
    np.testing.assert_array_equal(np.asarray(ransac_run.qc["affine"]), ransac_run.affine)


def test_same_config_and_inputs_give_the_same_matrix_bytes(pair, ransac_run, tmp_path):
    run_rule_script(pair, [["ransac", RANSAC], ["affine", AFFINE]], tmp_path)
    assert (tmp_path / "affine.mat").read_bytes() == (ransac_run.out / "affine.mat").read_bytes()


def test_same_bytes_with_two_threads_for_a_correlation_metric(pair, tmp_path):
    """ITK's Mattes MI sums its histogram in thread order (last-bit differences with
    threads > 1); correlation and mean squares are reproducible with any thread count."""
    steps = [["ransac", RANSAC], ["affine", {**AFFINE, "metric": "C"}]]
    one, _ = run_rule_script(pair, steps, tmp_path / "one", threads=2)
    run_rule_script(pair, steps, tmp_path / "two", threads=2)
    assert (tmp_path / "one/affine.mat").read_bytes() == (tmp_path / "two/affine.mat").read_bytes()
    assert median_tre(one, pair.truth, pair.landmarks) < VOXEL


def test_global_overlay_png_is_written(ransac_run):
    rgb = read_png(ransac_run.out / "overlay.png")
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[1] > 2 * rgb.shape[0] * 0.9
    left, right = rgb[:, : rgb.shape[1] // 2], rgb[:, rgb.shape[1] // 2:]
    # after the global affine red and green agree more than before
    assert agreement(right) > agreement(left) + 0.2


# ---------------------------------------------------------------------------
# block stage
# ---------------------------------------------------------------------------

def crops(pair, fix_start, fix_stop, margin_um=8.0):
    """A fixed block and the moving region covering it (through the truth), as Images."""
    fix = Image(pair.fix[tuple(slice(a, b) for a, b in zip(fix_start, fix_stop))], FIX_SPACING,
                np.asarray(fix_start) * FIX_SPACING)
    corners = box_corners(fix_start, np.asarray(fix_stop) - 1) * FIX_SPACING
    moved = apply_affine(pair.truth, corners)
    lo = np.maximum(np.floor((moved.min(0) - margin_um) / MOV_SPACING), 0).astype(int)
    hi = np.minimum(np.ceil((moved.max(0) + margin_um) / MOV_SPACING) + 1,
                    pair.mov.shape).astype(int)
    mov = Image(pair.mov[tuple(slice(a, b) for a, b in zip(lo, hi))], MOV_SPACING,
                lo * MOV_SPACING)
    return fix, mov


@pytest.fixture(scope="module")
def block(pair):
    """One fixed block, voxels (4, 24, 24) to (36, 104, 104), and its moving region."""
    return crops(pair, (4, 24, 24), (36, 104, 104))


def off_by(affine, shift_um):
    """A copy of ``affine`` whose translation is off by ``shift_um`` (z, y, x)."""
    out = affine.copy()
    out[:3, 3] += shift_um
    return out


def test_block_ransac_recovers_large_local_motion(pair, block):
    """A block whose global affine is 6 µm (12 voxels) off is fixed by a block ransac step."""
    fix, mov = block
    start = off_by(pair.truth, [2.0, 6.0, -6.0])
    steps = normalize_steps([["ransac", {"blob_radius": 2.5}]], "blocks.steps")
    (result,) = run_steps(steps, fix, mov, static=[StepResult("global", "affine", start.ravel())],
                          seed=block_seed("0000_0001_0002"), log=lambda m: None)
    assert result.qc["status"] == "ok", result.qc
    total = start @ result.parameters.reshape(4, 4)
    inside = np.all((pair.landmarks >= fix.origin + 3)
                    & (pair.landmarks <= fix.origin + extent(fix.data.shape, FIX_SPACING) - 3),
                    axis=1)
    assert median_tre(total, pair.truth, pair.landmarks[inside]) < VOXEL


def test_block_ransac_failure_becomes_a_recorded_fallback(pair, block):
    fix, mov = block
    blank = Image(np.full_like(fix.data, 0.2), fix.spacing, fix.origin)
    steps = normalize_steps([["ransac", {"blob_radius": 2.5}], ["affine", AFFINE]], "blocks.steps")
    results = run_steps(steps, blank, mov, static=[StepResult("global", "affine",
                                                              pair.truth.ravel())],
                        seed=block_seed("0000_0000_0000"), log=lambda m: None)
    qc = results[0].qc
    assert qc["status"] == "fallback" and "too few points in the fixed image" in qc["reason"]
    assert "\n" not in qc["reason"]
    np.testing.assert_array_equal(results[0].parameters.reshape(4, 4), np.eye(4))
    assert block_status([r.qc for r in results]) == "fallback"


def test_block_random_search_is_seeded(pair, block):
    fix, mov = block
    start = off_by(pair.truth, [0.0, 2.0, -2.0])
    (name, params), = normalize_steps([["random", {
        "random_iterations": 60, "max_translation": 3.0, "max_rotation": 0.05,
        "alignment_spacing": 1.0}]], "blocks.steps")
    static = [StepResult("global", "affine", start.ravel())]
    one = run_step(name, params, fix, mov, static, seed=block_seed("0000_0001_0002"))
    two = run_step(name, params, fix, mov, static, seed=block_seed("0000_0001_0002"))
    assert one.qc["status"] == "ok" and one.qc["metric_after"] < one.qc["metric_before"]
    assert one.parameters.tobytes() == two.parameters.tobytes()


# ---------------------------------------------------------------------------
# overlay building blocks
# ---------------------------------------------------------------------------

def read_png(path):
    """Decode an 8-bit RGB, non-interlaced PNG (what write_png writes: filter 0 or 4); checks CRCs."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            header = struct.unpack(">II", body[:8]), body[8:]
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    (width, height), rest = header
    assert rest[:2] == b"\x08\x02"
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    assert set(rows[:, 0]) <= {0, 4}  # none or Paeth
    return _unfilter(rows, 3).reshape(height, width, 3)


def _unfilter(rows, bpp):
    """Undo PNG filters 0 (none) and 4 (Paeth) byte by byte, as the PNG spec states them."""
    out = np.zeros((rows.shape[0], rows.shape[1] - 1), np.int64)
    for r, row in enumerate(rows):
        for i, v in enumerate(row[1:].astype(np.int64)):
            if row[0] == 0:
                out[r, i] = v
                continue
            a = out[r, i - bpp] if i >= bpp else 0
            b = out[r - 1, i] if r else 0
            c = out[r - 1, i - bpp] if r and i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[r, i] = (v + pred) % 256
    return out.astype(np.uint8)


def agreement(rgb):
    """Correlation of the red and green channels over non-grey pixels."""
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return ncc(rgb[~grey, 0], rgb[~grey, 1])


def test_overlay_colours_and_layout():
    fix = np.zeros((10, 20, 30), np.float32)
    mov = np.zeros_like(fix)
    fix[5, 5, 5] = mov[5, 5, 5] = 1.0  # both: yellow
    fix[5, 15, 25] = 1.0               # fixed only: red
    mov[2, 10, 15] = 1.0               # moving only: green
    rgb = overlay.overlay_rgb(fix, mov, spacing=(2.0, 1.0, 1.0), mode="max",
                              percentiles=(0, 100))
    assert rgb.dtype == np.uint8 and rgb.shape == (20 + overlay.GAP + 20, 30 + overlay.GAP + 20, 3)
    assert tuple(rgb[5, 5]) == (255, 255, 0)
    assert tuple(rgb[15, 25]) == (255, 0, 0)
    assert tuple(rgb[10, 15]) == (0, 255, 0)
    assert tuple(rgb[-1, -1]) == (overlay.BACKGROUND,) * 3  # empty corner
    slices = overlay.overlay_rgb(fix, mov, mode="slice", percentiles=(0, 100))
    assert tuple(slices[5, 5]) == (255, 255, 0) and tuple(slices[10, 15]) == (0, 0, 0)
    with pytest.raises(ValueError, match="one grid"):
        overlay.overlay_rgb(fix, mov[:5])


def test_png_round_trip_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    panels = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
              rng.integers(0, 256, (20, 50, 3), dtype=np.uint8)]
    rgb = overlay.side_by_side(panels, ["BEFORE", "AFTER BLOCKS"])
    assert rgb.dtype == np.uint8 and rgb.shape[0] > 30 and rgb.shape[1] >= 40 + 50
    overlay.write_png(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(read_png(tmp_path / "x.png"), rgb)
    try:
        from PIL import Image as PILImage  # an independent decoder when installed
    except ImportError:
        return
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "x.png")), rgb)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
