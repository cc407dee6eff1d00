"""Synthetic demo pair with known ground truth, for tests and benchmarks.

The fixed volume is a field of nuclei-like blobs inside an ellipsoidal
"tissue" region.  The moving volume is the same analytic scene seen through a
known transform ``T(x) = A @ (x + u(x))`` (fixed µm -> moving µm), with an
intensity change and fresh noise.  Because the scene is analytic, the moving
image is *pull-rendered*: each moving voxel ``y`` is mapped back to the fixed
point ``x`` with ``T(x) = y`` and the scene is evaluated there, so
``moving(T(x)) ~= fixed(x)`` up to intensity change and noise.

Conventions (see :mod:`snakestream`): arrays (z, y, x); spacing and every
coordinate in µm, z, y, x order; voxel index ``i`` sits at ``i * spacing``.

Usage::

    python -m snakestream.demo OUT_DIR [--shape Z Y X]
        [--spacing z y x] [--mov-spacing z y x] [--seed N]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import zarr
from scipy import ndimage

from snakestream.errors import InputError
from snakestream.fields.transform import inverse_displacement
from snakestream.grid.geometry import apply_affine, physical_grid
from snakestream.io.atomic import atomic_path
from snakestream.qc import metrics

TWO_PI = 2.0 * np.pi

#: Intensity model: counts = offset + gain * scene (+ noise); moving scene is
#: ``MOV_SCALE * scene ** MOV_GAMMA``.
GAIN = 1500.0
FIX_OFFSET = 100.0
MOV_OFFSET = 110.0
MOV_SCALE = 0.7
MOV_GAMMA = 1.2
READ_NOISE = 4.0

#: Scene model.
BLOBS_PER_1000_UM3 = 8.0
BLOB_RADIUS_UM = (1.5, 3.0)
BLOB_CUTOFF_RADII = 2.0
BACKGROUND_LEVEL = 0.08
BACKGROUND_MODULATION = 0.3
MASK_SMOOTH_UM = 1.5
LANDMARK_MARGIN_UM = 3.0
MOVING_MARGIN_UM = 2.0
CHUNKS = (16, 64, 64)


# --------------------------------------------------------------------------
# Ground truth transform
# --------------------------------------------------------------------------
@dataclass
class DemoTruth:
    """Known transform and landmarks of a demo pair.

    Attributes
    ----------
    affine : (4, 4) ndarray
        Maps fixed physical coordinates (µm, zyx) to moving ones.
    disp_amp : (K, 3) ndarray
        Amplitude vector (µm, zyx) of each sinusoidal displacement term.
    disp_freq : (K, 3) ndarray
        Wave vector (cycles/µm, zyx) of each term.
    disp_phase : (K,) ndarray
        Phase (radians) of each term.
    landmarks_fixed, landmarks_moving : (N, 3) ndarray
        Blob centres in fixed µm and their images ``T(c)`` in moving µm.
    fix_spacing, mov_spacing : (3,) ndarray
        Voxel size in µm, zyx.
    fix_shape, mov_shape : (3,) ndarray of int
        Array shapes, zyx.
    """

    affine: np.ndarray
    disp_amp: np.ndarray
    disp_freq: np.ndarray
    disp_phase: np.ndarray
    landmarks_fixed: np.ndarray
    landmarks_moving: np.ndarray
    fix_spacing: np.ndarray
    mov_spacing: np.ndarray
    fix_shape: np.ndarray
    mov_shape: np.ndarray

    def displacement(self, points_um):
        """Displacement u(x) in µm at fixed points ``(N, 3)`` µm zyx -> ``(N, 3)``."""
        pts = np.asarray(points_um, dtype=float).reshape(-1, 3)
        phase = TWO_PI * _rows_times(pts, self.disp_freq) + self.disp_phase
        return _rows_times(np.sin(phase), self.disp_amp.T)

    def displacement_gradient(self, points_um):
        """Jacobian du_i/dx_j of u at fixed points, ``(N, 3, 3)``, unitless."""
        pts = np.asarray(points_um, dtype=float).reshape(-1, 3)
        cos = np.cos(TWO_PI * _rows_times(pts, self.disp_freq) + self.disp_phase)
        return TWO_PI * np.einsum("nk,ki,kj->nij", cos, self.disp_amp, self.disp_freq)

    def transform(self, points_um):
        """Full transform T(x) = A @ (x + u(x)): fixed µm ``(N, 3)`` -> moving µm."""
        pts = np.asarray(points_um, dtype=float).reshape(-1, 3)
        return apply_affine(self.affine, pts + self.displacement(pts))

    def inverse(self, points_um, tol_um=1e-7, max_iter=50):
        """Fixed points x with T(x) = y for moving points y ``(N, 3)`` µm.

        Fixed-point iteration ``x <- A^-1 y - u(x)``
        (:func:`~snakestream.fields.transform.inverse_displacement`); it contracts
        because ``|grad u| < 1``.  Stops when no point moves more than ``tol_um``.
        """
        target = apply_affine(np.linalg.inv(self.affine),
                              np.asarray(points_um, dtype=float).reshape(-1, 3))
        return target + inverse_displacement(self.displacement, target, iterations=max_iter,
                                             tol=tol_um)

    def lipschitz_bound(self):
        """Upper bound on the operator norm of grad u (unitless)."""
        return float(TWO_PI * np.sum(np.linalg.norm(self.disp_amp, axis=1)
                                     * np.linalg.norm(self.disp_freq, axis=1)))


def _rows_times(rows, matrix):
    """``rows @ matrix.T`` for (N, J) rows and a small (K, J) matrix -> (N, K).

    einsum avoids BLAS, whose threads make tall-skinny products slow.
    """
    return np.einsum("nj,kj->nk", rows, matrix)


def _rotation(angles_rad):
    """Rotation matrix (zyx frame) from angles about the z, y and x axes."""
    rz, ry, rx = angles_rad
    about_z = np.array([[1, 0, 0], [0, np.cos(rz), -np.sin(rz)], [0, np.sin(rz), np.cos(rz)]])
    about_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    about_x = np.array([[np.cos(rx), -np.sin(rx), 0], [np.sin(rx), np.cos(rx), 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


def _random_sign(rng, size=None):
    """Random +1/-1 values."""
    return np.where(rng.random(size) < 0.5, -1.0, 1.0)


def _random_linear(rng):
    """Round-to-round linear part: rotation ~3-5° in-plane, ~0.5-1.5° tilts,
    scale within ±4 % per axis, shear within ±0.02.  Returns (3, 3)."""
    degrees = np.array([rng.uniform(3.0, 5.0), rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5)])
    rot = _rotation(np.deg2rad(degrees * _random_sign(rng, 3)))
    scale = np.diag(1.0 + rng.uniform(-0.04, 0.04, 3))
    shear = np.eye(3)
    shear[np.triu_indices(3, 1)] = rng.uniform(-0.02, 0.02, 3)
    return rot @ shear @ scale


def _random_displacement(rng, fov_um, n_terms=3):
    """Smooth displacement terms: amplitudes (K, 3) µm, wave vectors (K, 3)
    cycles/µm with wavelength 0.6-1x the field of view (>= 32 µm), phases (K,)."""
    amp_dir = rng.normal(size=(n_terms, 3))
    amp_dir /= np.linalg.norm(amp_dir, axis=1, keepdims=True)
    amp = amp_dir * rng.uniform(0.6, 1.0, (n_terms, 1))
    wave_dir = rng.normal(size=(n_terms, 3))
    wave_dir /= np.linalg.norm(wave_dir, axis=1, keepdims=True)
    wavelength = np.maximum(32.0, np.mean(fov_um) * rng.uniform(0.6, 1.0, (n_terms, 1)))
    phase = rng.uniform(0.0, TWO_PI, n_terms)
    return amp, wave_dir / wavelength, phase


def _domain_corners(shape, spacing):
    """The 8 corners (µm, zyx) of the grid's domain ``[0, (n - 1) * spacing]``."""
    extent = (np.asarray(shape) - 1) * np.asarray(spacing, float)
    corners = np.meshgrid(*[[0.0, e] for e in extent], indexing="ij")
    return np.stack(corners, axis=-1).reshape(-1, 3)


def _moving_grid(linear, translation_um, fix_shape, fix_spacing, mov_spacing, *, reach_um,
                 high_um):
    """Moving grid and affine so that T(fixed domain) lies inside the grid.

    The translation is raised where needed so that T(fixed domain) starts at
    least MOVING_MARGIN_UM above the moving origin; ``reach_um`` bounds
    |A_lin @ u| per axis; ``high_um`` (>= MOVING_MARGIN_UM) is the margin
    kept above it.
    Returns (mov_shape (3,) int, affine (4, 4)).
    """
    mapped = _domain_corners(fix_shape, fix_spacing) @ linear.T
    low_need = MOVING_MARGIN_UM + reach_um - mapped.min(axis=0)
    translation = np.maximum(translation_um, low_need)
    top = mapped.max(axis=0) + translation + reach_um + high_um
    mov_shape = np.ceil(top / mov_spacing).astype(int) + 1
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = translation
    return mov_shape, affine


def make_truth_transform(rng, fix_shape, fix_spacing, mov_spacing):
    """Draw the affine, displacement and moving grid of a demo pair.

    Translation is 5-10 % of the field of view per axis (raised if T would
    leave the moving grid); the moving grid ends 3-12 % of the field of view
    (plus MOVING_MARGIN_UM) beyond T(fixed domain), so a centre-to-centre
    start is off by a few µm.  Returns a :class:`DemoTruth` without landmarks
    (empty (0, 3) arrays).
    """
    fix_spacing = np.asarray(fix_spacing, float)
    mov_spacing = np.asarray(mov_spacing, float)
    fov = np.asarray(fix_shape) * fix_spacing
    linear = _random_linear(rng)
    translation = rng.uniform(0.05, 0.10, 3) * fov
    amp, freq, phase = _random_displacement(rng, fov)
    reach = np.abs(linear) @ np.abs(amp).sum(axis=0)
    high = MOVING_MARGIN_UM + rng.uniform(0.03, 0.12, 3) * fov
    mov_shape, affine = _moving_grid(linear, translation, fix_shape, fix_spacing,
                                     mov_spacing, reach_um=reach, high_um=high)
    empty = np.zeros((0, 3))
    return DemoTruth(affine, amp, freq, phase, empty, empty, fix_spacing, mov_spacing,
                     np.asarray(fix_shape, int), mov_shape)


# --------------------------------------------------------------------------
# Analytic scene
# --------------------------------------------------------------------------
@dataclass
class Scene:
    """Analytic intensity model in fixed µm (zyx), values ~0..1.

    Attributes
    ----------
    tissue_centre, tissue_axes : (3,) ndarray
        Centre and semi-axes (µm) of the ellipsoidal tissue region.
    bg_freq, bg_phase : (3,) ndarray, float
        Low-frequency modulation (cycles/µm, radians) of the background.
    centres : (N, 3) ndarray
        Blob centres, µm.
    precision : (N, 3, 3) ndarray
        Ellipsoid shape of each blob: ``d @ P @ d == 1`` on its surface, 1/µm².
    radius_max : (N,) ndarray
        Largest semi-axis of each blob, µm.
    brightness, tex_amp, tex_phase : (N,) ndarray
        Peak intensity, texture contrast and texture phase of each blob.
    tex_freq : (N, 3) ndarray
        Texture wave vector, cycles/µm.
    """

    tissue_centre: np.ndarray
    tissue_axes: np.ndarray
    bg_freq: np.ndarray
    bg_phase: float
    centres: np.ndarray
    precision: np.ndarray
    radius_max: np.ndarray
    brightness: np.ndarray
    tex_amp: np.ndarray
    tex_freq: np.ndarray
    tex_phase: np.ndarray


def _tissue_region(rng, fov_um):
    """Ellipsoid (centre, semi-axes in µm) shifted towards the origin so that
    the high-index corners of the volume hold background only."""
    centre = fov_um * (np.array([0.5, 0.45, 0.45]) + rng.uniform(-0.02, 0.02, 3))
    axes = fov_um * np.array([0.42, 0.38, 0.38])
    return centre, axes


def _sample_centres(rng, centre, axes, count, min_dist_um):
    """Dart-throw ``count`` points inside an ellipsoid (shrunk by 2 µm) at
    least ``min_dist_um`` apart (fewer if it runs out of tries)."""
    inner = np.maximum(axes - 2.0, 1.0)
    kept = np.empty((0, 3))
    for _ in range(30 * count):
        if len(kept) == count:
            break
        p = rng.uniform(-1.0, 1.0, 3)
        if np.sum(p * p) > 1.0:
            continue
        p = centre + p * inner
        if len(kept) == 0 or np.min(np.sum((kept - p) ** 2, axis=1)) >= min_dist_um ** 2:
            kept = np.vstack([kept, p])
    return kept


def _random_orientations(rng, n):
    """``n`` random 3x3 rotation matrices (QR of gaussian matrices)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[:, :, 0] *= det[:, None]
    return q


def _blob_shapes(rng, n):
    """Randomly oriented ellipsoids with semi-axes in BLOB_RADIUS_UM.

    Returns precision (n, 3, 3) in 1/µm² (``d @ P @ d == 1`` on the surface)
    and the largest semi-axis (n,) in µm.
    """
    lo, hi = BLOB_RADIUS_UM
    radius = rng.uniform(lo + 0.3, hi - 0.4, (n, 1)) * rng.uniform(0.8, 1.2, (n, 3))
    radius = np.clip(radius, lo, hi)
    rot = _random_orientations(rng, n)
    precision = np.einsum("nij,nj,nkj->nik", rot, 1.0 / radius ** 2, rot)
    return precision, radius.max(axis=1)


def make_scene(rng, fix_shape, fix_spacing):
    """Draw a nuclei-like scene that fits the fixed field of view."""
    fov = np.asarray(fix_shape) * np.asarray(fix_spacing, float)
    centre, axes = _tissue_region(rng, fov)
    volume = 4.0 / 3.0 * np.pi * np.prod(axes)
    count = int(round(BLOBS_PER_1000_UM3 * volume / 1000.0))
    centres = _sample_centres(rng, centre, axes, count, min_dist_um=3.2)
    n = len(centres)
    precision, radius_max = _blob_shapes(rng, n)
    tex_dir = rng.normal(size=(n, 3))
    tex_dir /= np.linalg.norm(tex_dir, axis=1, keepdims=True)
    tex_freq = tex_dir / rng.uniform(2.2, 3.5, (n, 1))
    bg_freq = rng.normal(size=3) / np.mean(fov)
    return Scene(centre, axes, bg_freq, rng.uniform(0, TWO_PI), centres, precision,
                 radius_max, rng.uniform(0.45, 1.0, n), rng.uniform(0.2, 0.4, n),
                 tex_freq, rng.uniform(0, TWO_PI, n))


def _background(scene, points_um):
    """Weak smooth tissue background at ``(N, 3)`` fixed µm points -> (N,)."""
    rho = np.sqrt(np.sum(((points_um - scene.tissue_centre) / scene.tissue_axes) ** 2, axis=1))
    envelope = 0.5 * (1.0 - np.tanh((rho - 1.0) / 0.04))
    wave = np.sin(TWO_PI * _rows_times(points_um, scene.bg_freq[None])[:, 0] + scene.bg_phase)
    return BACKGROUND_LEVEL * envelope * (1.0 + BACKGROUND_MODULATION * wave)


def _blob(scene, i, points_um):
    """Intensity of blob ``i`` at ``(N, 3)`` fixed µm points -> (N,).

    Textured flat-topped ellipsoid ``exp(-rho**4 / 2)`` (rho = ellipsoidal
    radius in units of the semi-axes: 61 % of the peak on the surface, half
    maximum at rho = 1.09), exactly zero beyond rho = BLOB_CUTOFF_RADII so
    that fixed and moving renderings use the identical function.
    """
    d = points_um - scene.centres[i]
    rho2 = np.einsum("nj,jk,nk->n", d, scene.precision[i], d)
    wave = np.cos(TWO_PI * _rows_times(d, scene.tex_freq[i][None])[:, 0] + scene.tex_phase[i])
    texture = 1.0 + scene.tex_amp[i] * wave
    value = scene.brightness[i] * np.exp(-0.5 * rho2 * rho2) * texture
    return np.where(rho2 <= BLOB_CUTOFF_RADII ** 2, value, 0.0)


def _window(centre_um, radius_um, spacing, shape):
    """Index slices (zyx) of the grid box within ``radius_um`` of a point."""
    lo = np.floor((centre_um - radius_um) / spacing).astype(int)
    hi = np.floor((centre_um + radius_um) / spacing).astype(int) + 1
    lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def render(scene, points_um, centres_um, radii_um, spacing):
    """Evaluate the scene on a grid.

    Parameters
    ----------
    scene : Scene
    points_um : (Z, Y, X, 3) ndarray
        Fixed-frame position (µm) of every voxel of the grid being rendered.
    centres_um, radii_um : (N, 3), (N,) ndarray
        Each blob's centre and support radius in the *grid's* frame (µm);
        used only to pick the window of voxels to evaluate.
    spacing : (3,) ndarray
        Grid voxel size, µm zyx.

    Returns
    -------
    (Z, Y, X) float64 ndarray of scene intensity.
    """
    shape = np.array(points_um.shape[:3])
    image = _background(scene, points_um.reshape(-1, 3)).reshape(points_um.shape[:3])
    for i in range(len(scene.centres)):
        win = _window(centres_um[i], radii_um[i], spacing, shape)
        pts = points_um[win]
        if pts.size:
            image[win] += _blob(scene, i, pts.reshape(-1, 3)).reshape(pts.shape[:3])
    return image


def grid_points(shape, spacing):
    """Physical positions (µm) of all voxels, ``(Z, Y, X, 3)`` zyx."""
    return physical_grid((0, 0, 0), shape, spacing)


def render_fixed(scene, truth):
    """Noise-free fixed scene on the fixed grid, (Z, Y, X) float64."""
    points = grid_points(truth.fix_shape, truth.fix_spacing)
    radii = BLOB_CUTOFF_RADII * scene.radius_max
    return render(scene, points, scene.centres, radii, truth.fix_spacing)


def render_moving(scene, truth):
    """Noise-free scene pulled through the truth onto the moving grid.

    Every moving voxel y is mapped to x with T(x) = y and the scene is
    evaluated at x.  Windows around T(c) are widened by |A| (1 + |grad u|).
    """
    moving_pts = grid_points(truth.mov_shape, truth.mov_spacing)
    points = truth.inverse(moving_pts.reshape(-1, 3), tol_um=1e-5).reshape(moving_pts.shape)
    stretch = np.linalg.norm(truth.affine[:3, :3], 2) * (1.0 + truth.lipschitz_bound())
    radii = BLOB_CUTOFF_RADII * scene.radius_max * stretch + np.max(truth.mov_spacing)
    return render(scene, points, truth.transform(scene.centres), radii, truth.mov_spacing)


# --------------------------------------------------------------------------
# Detector model and mask
# --------------------------------------------------------------------------
def to_counts(scene_values, rng, offset):
    """Camera counts (uint16) from scene intensity: poisson shot noise on
    ``GAIN * value``, gaussian read noise, plus ``offset``."""
    signal = GAIN * np.clip(scene_values, 0.0, None)
    counts = rng.poisson(signal) + rng.normal(offset, READ_NOISE, signal.shape)
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def foreground_mask(fixed_counts, spacing):
    """uint8 0/1 mask: fixed counts smoothed by a gaussian of MASK_SMOOTH_UM
    (sigma, µm) above halfway from the camera offset to the dimmest tissue
    background."""
    sigma_vox = MASK_SMOOTH_UM / np.asarray(spacing, float)
    smooth = ndimage.gaussian_filter(fixed_counts.astype(np.float32), sigma_vox)
    dimmest = BACKGROUND_LEVEL * (1.0 - BACKGROUND_MODULATION)
    threshold = FIX_OFFSET + GAIN * 0.5 * dimmest
    return (smooth > threshold).astype(np.uint8)


def inner_landmarks(centres_um, shape, spacing, margin_um=LANDMARK_MARGIN_UM):
    """Centres at least ``margin_um`` inside the fixed domain, (M, 3) µm."""
    extent = (np.asarray(shape) - 1) * np.asarray(spacing, float)
    inside = np.all((centres_um >= margin_um) & (centres_um <= extent - margin_um), axis=1)
    return centres_um[inside]


# --------------------------------------------------------------------------
# Writers (atomic: a temporary sibling renamed into place)
# --------------------------------------------------------------------------
def write_zarr(path, data, spacing, chunks=CHUNKS):
    """Write ``data`` as dataset ``s0`` of a Zarr v2 group, attr ``spacing`` (µm zyx)."""
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        arr = group.create_array("s0", shape=data.shape, dtype=data.dtype,
                                 chunks=tuple(min(c, n) for c, n in zip(chunks, data.shape)),
                                 attributes={"spacing": [float(s) for s in spacing]})
        arr[...] = data


def write_h5(path, data, spacing, chunks=CHUNKS):
    """Write ``data`` as chunked dataset ``/ch0`` with attr ``element_size_um`` (zyx)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("ch0", data=data, compression="gzip", compression_opts=1,
                              chunks=tuple(min(c, n) for c, n in zip(chunks, data.shape)),
                              track_times=False)
        ds.attrs["element_size_um"] = np.asarray(spacing, float)


def write_truth(path, truth):
    """Write the truth arrays to ``path`` (.npz) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **_truth_arrays(truth))


def write_landmarks_csv(path, truth):
    """Write the truth's landmark pairs to ``path`` as BigWarp's landmarks.csv, atomically."""
    from snakestream.qc.landmarks import Landmarks, write_bigwarp

    pairs = Landmarks([f"Pt-{i}" for i in range(len(truth.landmarks_fixed))],
                      truth.landmarks_fixed, truth.landmarks_moving)
    with atomic_path(str(path)) as tmp:
        write_bigwarp(tmp, pairs)


def _truth_arrays(truth):
    """Dict of the DemoTruth fields as plain arrays."""
    return {name: np.asarray(getattr(truth, name)) for name in DemoTruth.__dataclass_fields__}


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------
def make_pair(shape=(48, 160, 160), spacing=(0.8, 0.4, 0.4), mov_spacing=None, seed=0):
    """Generate a demo pair in memory.

    Returns
    -------
    dict with ``fix`` (uint16 zyx), ``mov`` (uint16 zyx), ``fix_mask``
    (uint8 0/1 zyx) and ``truth`` (:class:`DemoTruth`).
    """
    rng = np.random.default_rng(seed)
    mov_spacing = spacing if mov_spacing is None else mov_spacing
    truth = make_truth_transform(rng, shape, spacing, mov_spacing)
    scene = make_scene(rng, shape, spacing)
    truth.landmarks_fixed = inner_landmarks(scene.centres, shape, spacing)
    truth.landmarks_moving = truth.transform(truth.landmarks_fixed)
    fix = to_counts(render_fixed(scene, truth), rng, FIX_OFFSET)
    mov_scene = MOV_SCALE * np.clip(render_moving(scene, truth), 0.0, None) ** MOV_GAMMA
    mov = to_counts(mov_scene, rng, MOV_OFFSET)
    return {"fix": fix, "mov": mov, "fix_mask": foreground_mask(fix, spacing), "truth": truth}


def make_demo(out_dir, shape=(48, 160, 160), spacing=(0.8, 0.4, 0.4), mov_spacing=None, seed=0):
    """Generate a demo pair with known truth and write it to ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if missing).
    shape : (3,) int
        Fixed array shape, zyx.
    spacing : (3,) float
        Fixed voxel size, µm zyx.
    mov_spacing : (3,) float or None
        Moving voxel size, µm zyx (default: same as ``spacing``).  The moving
        shape is chosen to hold T(fixed domain) with a margin.
    seed : int
        Seed of ``numpy.random.default_rng``; same seed -> same bytes.

    Returns
    -------
    dict of str paths: ``fix`` (fix.zarr, dataset s0), ``mov`` (mov.h5,
    dataset /ch0), ``fix_mask`` (fix_mask.zarr, dataset s0), ``truth``
    (truth.npz) and ``landmarks`` (landmarks.csv: the truth's landmarks in
    BigWarp's format, what the demo config's ``landmarks`` key reads).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pair = make_pair(shape, spacing, mov_spacing, seed)
    truth = pair["truth"]
    paths = {key: out / name for key, name in [("fix", "fix.zarr"), ("mov", "mov.h5"),
             ("fix_mask", "fix_mask.zarr"), ("truth", "truth.npz"),
             ("landmarks", "landmarks.csv")]}
    write_zarr(paths["fix"], pair["fix"], truth.fix_spacing)
    write_h5(paths["mov"], pair["mov"], truth.mov_spacing)
    write_zarr(paths["fix_mask"], pair["fix_mask"], truth.fix_spacing)
    write_truth(paths["truth"], truth)
    write_landmarks_csv(paths["landmarks"], truth)
    return {key: str(p) for key, p in paths.items()}


def load_truth(path):
    """Read a ``truth.npz`` written by :func:`make_demo` into a :class:`DemoTruth`."""
    try:
        with np.load(path) as data:
            fields = {name: data[name] for name in DemoTruth.__dataclass_fields__}
    except (OSError, KeyError, ValueError) as err:
        raise InputError(path, f"not a readable demo truth file ({err}).",
                         "Regenerate it with `python -m snakestream.demo OUT_DIR`.") from err
    return DemoTruth(**fields)


def tre(predicted_moving_um, truth):
    """Target registration error on the truth landmarks.

    Parameters
    ----------
    predicted_moving_um : (N, 3) array
        Predicted moving positions (µm, zyx) of ``truth.landmarks_fixed``,
        in the same order.
    truth : DemoTruth

    Returns
    -------
    dict: ``median``, ``p95``, ``max`` (µm) and ``n`` (number of landmarks), as
    :func:`snakestream.qc.metrics.tre`.
    """
    return metrics.tre(predicted_moving_um, truth.landmarks_moving)


def main(argv=None):
    """CLI: write a demo pair to OUT_DIR and print the paths."""
    parser = argparse.ArgumentParser(prog="python -m snakestream.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--shape", nargs=3, type=int, default=[48, 160, 160],
                        metavar=("Z", "Y", "X"), help="fixed array shape")
    parser.add_argument("--spacing", nargs=3, type=float, default=[0.8, 0.4, 0.4],
                        metavar=("z", "y", "x"), help="fixed voxel size, µm")
    parser.add_argument("--mov-spacing", nargs=3, type=float, default=None,
                        metavar=("z", "y", "x"), help="moving voxel size, µm (default: --spacing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    paths = make_demo(args.out_dir, tuple(args.shape), tuple(args.spacing),
                      None if args.mov_spacing is None else tuple(args.mov_spacing), args.seed)
    for key, path in paths.items():
        print(f"{key}\t{path}")


if __name__ == "__main__":
    main()
