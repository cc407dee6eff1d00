"""Feature-based and search-based affine initialisation: the ransac and random steps.

Pure functions, no I/O. Everything works in physical units so that the fixed
and moving volumes may have different (and anisotropic) spacings.

Conventions
-----------
* Arrays are indexed (z, y, x); spacing is in µm, z, y, x order.
* Points are (N, 3) float arrays of physical coordinates in µm, z, y, x, with
  voxel index i at physical position ``i * spacing`` (origin 0 at the centre of
  voxel 0).
* An affine is a 4x4 float64 matrix mapping FIXED physical coordinates to
  MOVING physical coordinates: ``moving = A[:3, :3] @ fixed + A[:3, 3]``.

Main entry points
-----------------
``ransac_align``                  blobs -> descriptors -> mutual matches -> RANSAC.
``random_affine_search``          bounded random search scored by a callable
                                  (``ncc_score`` builds one).
``phase_correlation_translation`` FFT translation on a common coarse grid.
"""

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from snakestream.errors import AlignmentError
from snakestream.grid.geometry import apply_affine
from snakestream.register.similarity import ncc

__all__ = [
    "detect_blobs",
    "describe",
    "match_mutual",
    "fit_affine",
    "ransac_affine",
    "ransac_align",
    "random_affine_search",
    "ncc_score",
    "phase_correlation_translation",
]


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def _spacing(spacing):
    """Return spacing as a float64 (3,) array (µm, z, y, x); reject bad values."""
    s = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be three positive numbers, got {spacing!r}")
    return s


def _check_affine(A):
    """Return A as a float64 4x4 array, or raise ValueError."""
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (4, 4):
        raise ValueError(f"an affine must be 4x4, got shape {A.shape}")
    return A


def _centre_um(shape, spacing):
    """Physical centre (µm, z, y, x) of a grid of ``shape`` voxels."""
    return (np.asarray(shape[:3], dtype=np.float64) - 1.0) * spacing / 2.0


def _parabolic_offset(minus, centre, plus):
    """Sub-sample offset of a peak from three samples, clipped to [-0.5, 0.5]."""
    denom = minus - 2.0 * centre + plus
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < 0, 0.5 * (minus - plus) / denom, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


# ---------------------------------------------------------------------------
# 1. blob detection
# ---------------------------------------------------------------------------

def _radius(radius_um):
    """A blob or context radius as a float64 (3,) array (µm, z, y, x), from one or three values."""
    return np.broadcast_to(np.asarray(radius_um, dtype=np.float64), (3,)).copy()


def blob_response(image, spacing, radius_um):
    """Scale-normalised negative Laplacian of Gaussian at a physical scale.

    Parameters
    ----------
    image : (Z, Y, X) array
    spacing : (3,) float, µm, z, y, x.
    radius_um : float or (3,) float
        Blob radius in µm (one value, or per axis z, y, x); the Gaussian has
        ``sigma = radius_um / sqrt(3)`` µm, i.e. ``sigma / spacing`` voxels per axis.

    Returns
    -------
    (Z, Y, X) float32 array, positive at bright blobs:
    ``-sum_axis sigma_axis**2 * d2/d axis**2`` in physical units, so an isotropic
    radius gives a response isotropic in µm whatever the voxel shape, and a radius
    of ``r`` voxels per axis gives skimage's ``-sigma**2 * gaussian_laplace``
    (bigstream's detector) in voxel units.
    """
    spacing = _spacing(spacing)
    sigma_um = _radius(radius_um) / np.sqrt(3.0)
    sigma_vox = sigma_um / spacing
    img = np.asarray(image, dtype=np.float32)
    response = np.zeros(img.shape, dtype=np.float32)
    for axis in range(3):
        order = [0, 0, 0]
        order[axis] = 2
        second = ndi.gaussian_filter(img, sigma_vox, order=order) / spacing[axis] ** 2
        response -= (sigma_um[axis] ** 2 * second).astype(np.float32)
    return response


def scale_radii(radius_um, max_radius_um=None, num_scales=1):
    """The detection scales: ``num_scales`` radii evenly from ``radius_um`` to
    ``max_radius_um`` (bigstream's ``linspace(min, max, num_sigma)``), (S, 3) µm."""
    low = _radius(radius_um)
    high = low if max_radius_um is None else _radius(max_radius_um)
    return np.linspace(low, high, max(int(num_scales), 1))


def _default_threshold(response):
    """Robust noise level of a response: median + 3 MAD-sigma, at least > 0."""
    med = float(np.median(response))
    mad = 1.4826 * float(np.median(np.abs(response - med)))
    floor = 1e-6 * float(np.max(np.abs(response)))
    return max(med + 3.0 * mad, floor, np.finfo(np.float32).tiny)


def _local_maxima(response, spacing, radius_um, threshold):
    """Voxel indices (N, 3) of local maxima above ``threshold``.

    The neighbourhood is a box of half-size ``radius_um`` (at least one voxel)
    on each axis.
    """
    half = np.maximum(1, np.round(_radius(radius_um) / spacing)).astype(int)
    peak = ndi.maximum_filter(response, size=tuple(2 * half + 1), mode="nearest")
    return np.argwhere((response == peak) & (response > threshold))


def _refine_subvoxel(response, idx):
    """Parabolic sub-voxel refinement of integer peak positions, per axis."""
    out = idx.astype(np.float64)
    shape = np.array(response.shape)
    for axis in range(3):
        lo, hi = idx.copy(), idx.copy()
        lo[:, axis] = np.maximum(idx[:, axis] - 1, 0)
        hi[:, axis] = np.minimum(idx[:, axis] + 1, shape[axis] - 1)
        r0 = response[tuple(idx.T)].astype(np.float64)
        rm = response[tuple(lo.T)].astype(np.float64)
        rp = response[tuple(hi.T)].astype(np.float64)
        out[:, axis] += _parabolic_offset(rm, r0, rp)
    return out


def _inside_border(points_um, shape, spacing, border_um):
    """Boolean (N,): points at least ``border_um`` from every face of the grid."""
    upper = (np.asarray(shape) - 1) * spacing - border_um
    return np.all((points_um >= border_um) & (points_um <= upper), axis=1)


def detect_blobs(image, spacing, radius_um, *, max_radius_um=None, num_scales=1,
                 threshold=None, max_points=5000, exclude_border_um=None, mask=None):
    """Detect bright blob-like features (nuclei, spots) at a physical scale.

    Parameters
    ----------
    image : (Z, Y, X) array
    spacing : (3,) float
        Voxel size in µm, z, y, x (may be anisotropic).
    radius_um : float or (3,) float
        Expected blob radius in µm, one value or per axis (LoG sigma =
        radius_um / sqrt(3) per axis, converted to voxels with ``spacing``; the
        local-maximum neighbourhood is a box of half-size radius_um).
    max_radius_um : float or (3,) float, optional
        Largest radius, µm: blobs are searched at :func:`scale_radii` and each
        voxel keeps its strongest scale-normalised response (the smallest radius
        sets the neighbourhood). Default: ``radius_um`` only.
    num_scales : int, default 1
        Number of radii from ``radius_um`` to ``max_radius_um``.
    threshold : float, optional
        Minimum scale-normalised LoG response. Default: median + 3 robust sigma
        (MAD) of the response over the image.
    max_points : int, default 5000
        Keep at most this many points, strongest first.
    exclude_border_um : float or (3,) float, optional
        Drop points closer than this to the image faces (µm, per axis). Default 0.
    mask : (Z, Y, X) bool array, optional
        Keep only peaks whose voxel is True.

    Returns
    -------
    points_um : (N, 3) float64
        Sub-voxel peak positions in µm, z, y, x, strongest first.
    strengths : (N,) float64
        LoG response at each peak (decreasing).
    """
    spacing = _spacing(spacing)
    image = np.asarray(image)
    empty = (np.zeros((0, 3)), np.zeros(0))
    if image.size == 0 or not np.isfinite(image).all() or np.ptp(image) == 0:
        return empty
    radii = scale_radii(radius_um, max_radius_um, num_scales)
    response = blob_response(image, spacing, radii[0])
    for radius in radii[1:]:
        np.maximum(response, blob_response(image, spacing, radius), out=response)
    thr = _default_threshold(response) if threshold is None else float(threshold)
    idx = _local_maxima(response, spacing, radius_um, thr)
    if mask is not None:
        idx = idx[np.asarray(mask, dtype=bool)[tuple(idx.T)]]
    if len(idx) == 0:
        return empty
    strengths = response[tuple(idx.T)].astype(np.float64)
    points = _refine_subvoxel(response, idx) * spacing
    if exclude_border_um is not None and np.any(np.asarray(exclude_border_um) > 0):
        keep = _inside_border(points, image.shape, spacing, _radius(exclude_border_um))
        points, strengths = points[keep], strengths[keep]
    order = np.argsort(-strengths, kind="stable")[: int(max_points)]
    return points[order], strengths[order]


# ---------------------------------------------------------------------------
# 2. descriptors
# ---------------------------------------------------------------------------

def grid_offsets(radius_um, grid=7):
    """Offsets (grid**3, 3) in µm of a box of side 2*radius_um (one value or per axis),
    z, y, x, C order."""
    axes = [np.linspace(-r, r, int(grid)) for r in _radius(radius_um)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _normalise_rows(values):
    """Zero-mean, unit-norm rows; constant rows become all zeros."""
    values = values - values.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    return np.divide(values, norm, out=np.zeros_like(values), where=norm > 0)


def describe(image, spacing, points_um, radius_um, *, grid=7, linear=None, smooth=True):
    """Intensity context of each point sampled on a fixed physical grid.

    Parameters
    ----------
    image : (Z, Y, X) array
    spacing : (3,) float, µm, z, y, x.
    points_um : (N, 3) float, µm, z, y, x.
    radius_um : float or (3,) float
        Half-side of the sampled box in µm, one value or per axis (the box has
        side 2*radius_um and ``grid`` samples per axis, the same in µm whatever
        the spacing).
    grid : int, default 7
    linear : (3, 3) array, optional
        Linear map applied to the grid offsets before sampling. Pass the
        linear part of a known fixed->moving affine when describing the MOVING
        image, so its descriptors are sampled in the fixed frame.
    smooth : bool, default True
        Gaussian pre-smoothing to half the grid step (in µm) before sampling,
        so images of different spacing are compared at the same resolution.

    Returns
    -------
    (N, grid**3) float32, zero-mean unit-norm rows (all zeros if flat), so the
    dot product of two descriptors is their Pearson correlation.
    """
    spacing = _spacing(spacing)
    points_um = np.asarray(points_um, dtype=np.float64).reshape(-1, 3)
    offsets = grid_offsets(radius_um, grid)
    if linear is not None:
        offsets = offsets @ np.asarray(linear, dtype=np.float64).T
    img = np.asarray(image, dtype=np.float32)
    if smooth and grid > 1:
        step_um = 2.0 * _radius(radius_um) / (grid - 1)
        img = ndi.gaussian_filter(img, 0.5 * step_um / spacing)
    coords = (points_um[:, None, :] + offsets[None, :, :]) / spacing
    values = ndi.map_coordinates(img, coords.reshape(-1, 3).T, order=1, mode="nearest")
    return _normalise_rows(values.reshape(len(points_um), -1).astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------
# 3. matching
# ---------------------------------------------------------------------------

def match_mutual(desc_fix, desc_mov, min_correlation=0.7, *, allowed=None):
    """Mutual best matches between two sets of normalised descriptors.

    Parameters
    ----------
    desc_fix : (N, D) array; desc_mov : (M, D) array
        Zero-mean unit-norm rows (as from ``describe``), so dot = correlation.
    min_correlation : float, default 0.7
    allowed : (N, M) bool array, optional
        Pairs that may match at all (e.g. :func:`near_pairs`); others never do.

    Returns
    -------
    idx_fix, idx_mov : (K,) int arrays
        Pairs that are each other's best match in both directions with
        correlation >= min_correlation, ordered by idx_fix.
    """
    desc_fix = np.asarray(desc_fix, dtype=np.float32)
    desc_mov = np.asarray(desc_mov, dtype=np.float32)
    if len(desc_fix) == 0 or len(desc_mov) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    corr = desc_fix @ desc_mov.T
    if allowed is not None:
        corr = np.where(allowed, corr, -np.inf)
    best_mov = np.argmax(corr, axis=1)
    best_fix = np.argmax(corr, axis=0)
    idx_fix = np.arange(len(desc_fix))
    keep = (best_fix[best_mov] == idx_fix) & (corr[idx_fix, best_mov] >= min_correlation)
    return idx_fix[keep], best_mov[keep]


def near_pairs(points_fix, points_mov, initial, max_distance_um):
    """(N, M) bool: fixed and moving points at most ``max_distance_um`` apart once the
    moving points are brought into the fixed frame by ``initial`` (bigstream's
    ``max_spot_match_distance``, measured after the static transforms)."""
    mov_in_fix = apply_affine(np.linalg.inv(_check_affine(initial)), points_mov)
    d2 = ((np.asarray(points_fix)[:, None, :] - mov_in_fix[None, :, :]) ** 2).sum(-1)
    return d2 <= float(max_distance_um) ** 2


# ---------------------------------------------------------------------------
# 4. RANSAC
# ---------------------------------------------------------------------------

def fit_affine(points_fix, points_mov):
    """Least-squares affine (4x4, fixed->moving) from >= 4 point pairs in µm."""
    pf = np.asarray(points_fix, dtype=np.float64)
    pm = np.asarray(points_mov, dtype=np.float64)
    X = np.hstack([pf, np.ones((len(pf), 1))])
    B = np.linalg.lstsq(X, pm, rcond=None)[0]
    A = np.eye(4)
    A[:3, :3], A[:3, 3] = B[:3].T, B[3]
    return A


def _minimal_fits(pf, pm, samples):
    """Exact affines from 4-point samples, batched.

    Returns B (k, 4, 3) with ``moving = [fixed, 1] @ B`` and a (k,) bool array
    marking non-degenerate (non-coplanar, distinct) samples.
    """
    X = np.concatenate([pf[samples], np.ones(samples.shape + (1,))], axis=-1)
    Y = pm[samples]
    scale = max(np.ptp(pf, axis=0).max(), 1e-12)
    valid = np.abs(np.linalg.det(X)) > 1e-6 * scale ** 3
    X[~valid] = np.eye(4)
    return np.linalg.solve(X, Y), valid


def _linear_plausible(B, scale_range):
    """(k,) bool: singular values of each sample's linear part within range."""
    sv = np.linalg.svd(np.swapaxes(B[:, :3, :], 1, 2), compute_uv=False)
    return (sv.min(axis=1) >= scale_range[0]) & (sv.max(axis=1) <= scale_range[1])


def _msac_costs(Xh, pm, B, threshold_um):
    """Truncated squared residual sums (k,) for each candidate B (k, 4, 3)."""
    residual = np.einsum("nj,kjd->knd", Xh, B) - pm[None]
    r2 = np.einsum("knd,knd->kn", residual, residual)
    return np.minimum(r2, threshold_um ** 2).sum(axis=1)


def _best_sample_fit(pf, pm, threshold_um, iterations, rng, scale_range, *, chunk=512):
    """Best 4-point affine (4x4) by MSAC cost over ``iterations`` random samples."""
    samples = rng.integers(0, len(pf), size=(int(iterations), 4))
    Xh = np.hstack([pf, np.ones((len(pf), 1))])
    best_cost, best_B = np.inf, None
    for start in range(0, len(samples), chunk):
        B, valid = _minimal_fits(pf, pm, samples[start:start + chunk])
        if scale_range is not None:
            valid &= _linear_plausible(B, scale_range)
        if not valid.any():
            continue
        costs = _msac_costs(Xh, pm, B[valid], threshold_um)
        k = int(np.argmin(costs))
        if costs[k] < best_cost:
            best_cost, best_B = costs[k], B[valid][k]
    if best_B is None:
        return None
    A = np.eye(4)
    A[:3, :3], A[:3, 3] = best_B[:3].T, best_B[3]
    return A


def _inliers(A, pf, pm, threshold_um):
    """(N,) bool: pairs whose residual |A pf - pm| is below threshold_um."""
    return np.linalg.norm(apply_affine(A, pf) - pm, axis=1) < threshold_um


def _refit(A, pf, pm, threshold_um, rounds=5):
    """Alternate least-squares refit on inliers and inlier re-selection."""
    inl = _inliers(A, pf, pm, threshold_um)
    for _ in range(rounds):
        if inl.sum() < 4:
            break
        A = fit_affine(pf[inl], pm[inl])
        new = _inliers(A, pf, pm, threshold_um)
        if np.array_equal(new, inl):
            break
        inl = new
    return A, inl


def _check_scale(A, scale_range, where):
    """Raise AlignmentError if A's singular values leave ``scale_range``."""
    sv = np.linalg.svd(A[:3, :3], compute_uv=False)
    if sv.min() < scale_range[0] or sv.max() > scale_range[1]:
        raise AlignmentError(
            where,
            f"implausible scale: singular values {np.round(sv, 3).tolist()} outside "
            f"[{scale_range[0]}, {scale_range[1]}].",
            "the matches are probably wrong; check spacings, blob radius and overlap.")


def ransac_affine(points_fix, points_mov, threshold_um, *, iterations=5000, seed=0,
                  min_inliers=12, scale_range=(0.5, 2.0), where="ransac"):
    """Robust affine from putative point pairs: 4-point RANSAC + LSQ refit.

    Parameters
    ----------
    points_fix, points_mov : (N, 3) float
        Matched physical points in µm, z, y, x (row i of one matches row i of
        the other).
    threshold_um : float
        Inlier distance in the moving space, µm.
    iterations : int, default 5000
        Number of random minimal samples (scored by MSAC truncated cost).
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the result is deterministic.
    min_inliers : int, default 12
        Raise AlignmentError if the final fit has fewer inliers.
    scale_range : (float, float) or None, default (0.5, 2.0)
        Samples whose linear part has a singular value outside this range are
        skipped, and a final fit outside it raises AlignmentError (None: no
        check).
    where : str
        Label used in error messages.

    Returns
    -------
    A : (4, 4) float64, fixed->moving µm.
    inliers : (N,) bool.
    """
    pf = np.asarray(points_fix, dtype=np.float64).reshape(-1, 3)
    pm = np.asarray(points_mov, dtype=np.float64).reshape(-1, 3)
    need = max(int(min_inliers), 4)
    if len(pf) < need:
        raise AlignmentError(where, f"too few matched points for RANSAC ({len(pf)}, need {need}).",
                             "use larger or more distinctive images, or lower the match threshold.")
    rng = np.random.default_rng(seed)
    A = _best_sample_fit(pf, pm, float(threshold_um), iterations, rng, scale_range)
    if A is None:
        raise AlignmentError(where, "every RANSAC sample was degenerate or implausibly scaled.",
                             "check the matches; points may be coplanar or the scale range too tight.")
    A, inl = _refit(A, pf, pm, float(threshold_um))
    if inl.sum() < need:
        raise AlignmentError(where, f"too few RANSAC inliers ({int(inl.sum())} of {len(pf)} matches, need {need}).",
                             "the images may not overlap; raise align_threshold_um or give an initial transform.")
    if scale_range is not None:
        _check_scale(A, scale_range, where)
    return A, inl


def check_diagonal(A, constraint, where="ransac"):
    """Raise AlignmentError if a diagonal entry of ``A[:3, :3]`` leaves ``1 ± constraint``
    (bigstream's ``diagonal_constraint``)."""
    diagonal = np.diag(np.asarray(A, dtype=np.float64)[:3, :3])
    if np.any(np.abs(diagonal - 1.0) > float(constraint)):
        raise AlignmentError(
            where, f"implausible affine: diagonal {np.round(diagonal, 3).tolist()} outside "
            f"1 ± {constraint} (diagonal_constraint).",
            "the matches are probably wrong; check blob sizes and overlap, or raise "
            "diagonal_constraint for a large rotation or scale.")


# ---------------------------------------------------------------------------
# 5. the feature step
# ---------------------------------------------------------------------------

def _detect_or_raise(image, spacing, *, min_points, which, where, **detect):
    """detect_blobs (keywords ``detect``), raising AlignmentError if fewer than ``min_points``."""
    points, _ = detect_blobs(image, spacing, **detect)
    if len(points) < min_points:
        raise AlignmentError(
            where, f"too few points in the {which} image ({len(points)}, need {min_points}).",
            "check that the block has content and that the blob size matches the structures.")
    return points


def ransac_align(fix, mov, fix_spacing, mov_spacing, blob_radius_um, *,
                 max_radius_um=None, num_scales=1, match_threshold=0.7,
                 align_threshold_um=None, nspots=5000, seed=0, where="ransac", initial=None,
                 context_radius_um=None, exclude_border_um=None, grid=7, fix_mask=None,
                 mov_mask=None, fix_threshold=None, mov_threshold=None, iterations=5000,
                 min_points=12, min_matches=12, min_inliers=12, scale_range=(0.5, 2.0),
                 max_match_distance_um=None, diagonal_constraint=None, log=None):
    """Feature-based affine: blobs -> descriptors -> mutual matches -> RANSAC.

    Parameters
    ----------
    fix, mov : (Z, Y, X) arrays
    fix_spacing, mov_spacing : (3,) float, µm, z, y, x (may differ).
    blob_radius_um : float or (3,) float
        Radius of the blobs (nuclei, spots) to detect, µm (one value or per axis);
        the smallest radius with ``max_radius_um``.
    max_radius_um, num_scales
        Largest radius (µm) and number of radii (:func:`detect_blobs`).
    match_threshold : float, default 0.7
        Minimum descriptor correlation of a mutual match.
    align_threshold_um : float, optional
        RANSAC inlier distance in µm. Default: ``max(blob_radius_um / 2,
        largest voxel size of either image)``.
    nspots : int, default 5000
        Maximum number of blobs kept per image (strongest first).
    seed : int, default 0
        RANSAC seed; the result is deterministic.
    where : str, default 'ransac'
        Label for error messages (e.g. the block name).
    initial : (4, 4) array, optional
        A known fixed->moving affine (e.g. the global affine when aligning a
        block). Its linear part orients and scales the moving descriptors'
        sampling grid, so rotations/scales it contains need not be tolerated by
        the descriptors. Points are detected in each image's own space and the
        returned A maps fixed -> moving directly (it is NOT composed with
        ``initial``). Default: identity, which tolerates rotations up to about
        20 degrees.
    context_radius_um : float or (3,) float, optional
        Half-side of the descriptor box, µm. Default ``3 * blob_radius_um``.
    exclude_border_um : float or (3,) float, optional
        Blobs closer than this to a face are not used (µm). Default 0.
    grid : int, default 7
        Descriptor samples per axis.
    fix_mask, mov_mask : bool arrays, optional
        Only detect blobs where True.
    fix_threshold, mov_threshold : float, optional
        Minimum LoG response of a blob (:func:`detect_blobs`' default if None).
    iterations : int, default 5000
        RANSAC iterations.
    min_points : int or (int, int), default 12
        Fewer blobs in the fixed (first) or moving (second) image raise AlignmentError.
    min_matches, min_inliers : int, default 12
        Fewer mutual matches or RANSAC inliers raise AlignmentError.
    scale_range : (float, float), default (0.5, 2.0)
        Allowed range of the singular values of A[:3, :3]; outside raises.
    max_match_distance_um : float, optional
        Pairs farther apart than this (µm, after ``initial``) never match.
    diagonal_constraint : float, optional
        Raise if a diagonal entry of the matrix relative to ``initial``
        (``inv(initial) @ A``) leaves ``1 ± diagonal_constraint`` (:func:`check_diagonal`).
    log : callable, optional
        Receives one line per stage (blobs found, matches, RANSAC inliers).

    Returns
    -------
    A : (4, 4) float64, fixed -> moving, µm.

    Raises
    ------
    AlignmentError
        Too few points, matches or inliers, or an implausible scale or diagonal.
    """
    fs, ms = _spacing(fix_spacing), _spacing(mov_spacing)
    initial = np.eye(4) if initial is None else _check_affine(initial)
    radius = _radius(blob_radius_um)
    ctx = 3.0 * radius if context_radius_um is None else _radius(context_radius_um)
    if align_threshold_um is None:
        align_threshold_um = max(radius.max() / 2.0, fs.max(), ms.max())
    min_fix, min_mov = np.broadcast_to(np.asarray(min_points, dtype=int), (2,))
    detect = dict(radius_um=radius, max_radius_um=max_radius_um, num_scales=num_scales,
                  max_points=nspots, exclude_border_um=exclude_border_um, where=where)
    log = log or (lambda line: None)
    log(f"{where}: detecting blobs (radius {np.round(radius, 3).tolist()} µm)")
    pf = _detect_or_raise(fix, fs, mask=fix_mask, threshold=fix_threshold,
                          min_points=int(min_fix), which="fixed", **detect)
    pm = _detect_or_raise(mov, ms, mask=mov_mask, threshold=mov_threshold,
                          min_points=int(min_mov), which="moving", **detect)
    log(f"{where}: {len(pf)} fixed and {len(pm)} moving blobs; matching descriptors")
    df = describe(fix, fs, pf, ctx, grid=grid)
    dm = describe(mov, ms, pm, ctx, grid=grid, linear=initial[:3, :3])
    allowed = None if max_match_distance_um is None else \
        near_pairs(pf, pm, initial, max_match_distance_um)
    i, j = match_mutual(df, dm, match_threshold, allowed=allowed)
    if len(i) < min_matches:
        raise AlignmentError(
            where, f"too few mutual matches ({len(i)} of {len(pf)}/{len(pm)} points, need {min_matches}).",
            "the images may not overlap; lower match_threshold or give an initial transform.")
    log(f"{where}: {len(i)} mutual matches; RANSAC ({iterations} iterations)")
    A, inliers = ransac_affine(pf[i], pm[j], align_threshold_um, iterations=iterations,
                               seed=seed, min_inliers=min_inliers, scale_range=scale_range,
                               where=where)
    log(f"{where}: {int(np.sum(inliers))} inliers")
    if diagonal_constraint is not None:
        check_diagonal(np.linalg.inv(initial) @ A, diagonal_constraint, where)
    return A


# ---------------------------------------------------------------------------
# 6. bounded random search
# ---------------------------------------------------------------------------

def _rotation(rotvec):
    """Rotation matrix of a rotation vector (radians; axis z, y, x times angle), acting on
    (z, y, x) vectors (Rodrigues' formula)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle == 0.0:
        return np.eye(3)
    k = rotvec / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * K @ K


def _linear(rotvec, scales, shears):
    """Linear part R @ diag(scales) @ H, H unit upper triangular with ``shears``."""
    H = np.eye(3)
    H[0, 1], H[0, 2], H[1, 2] = shears
    return _rotation(rotvec) @ np.diag(scales) @ H


def _about_centre(L, translation, centre):
    """4x4 affine x -> L (x - centre) + centre + translation (µm)."""
    A = np.eye(4)
    A[:3, :3] = L
    A[:3, 3] = centre + translation - L @ centre
    return A


def _random_parameters(rng, n, max_translation_um, max_rotation_rad, max_scale, max_shear):
    """Draw n parameter sets uniformly within the bounds (log-uniform scale)."""
    t = rng.uniform(-1.0, 1.0, (n, 3)) * max_translation_um
    angles = rng.uniform(-1.0, 1.0, (n, 3)) * max_rotation_rad
    log_s = np.log(max_scale)
    scales = np.exp(rng.uniform(-log_s, log_s, (n, 3)))
    shears = rng.uniform(-1.0, 1.0, (n, 3)) * max_shear
    return t, angles, scales, shears


def random_affine_search(fix, mov, fix_spacing, mov_spacing, score, *, iterations=500,
                         max_translation_um=None, max_rotation_rad=0.25, max_scale=1.1,
                         max_shear=0.05, seed=0, initial=None):
    """Bounded random search for a fixed->moving affine minimising ``score``.

    Each candidate is ``initial @ D`` where D is a random rotation, scale and
    shear about the fixed image centre followed by a translation, with every
    parameter drawn uniformly within its bound (bigstream's ``random_affine_search``
    bounds: ``max_translation``, ``max_rotation``, ``max_scale``, ``max_shear``).
    The first candidate is ``initial`` itself (identity by default), so the
    result never scores worse.

    Parameters
    ----------
    fix, mov : (Z, Y, X) arrays
        Only ``fix.shape`` (for the centre and the default translation bound)
        is used; ``mov`` and ``mov_spacing`` are accepted for a uniform API.
    fix_spacing, mov_spacing : (3,) float, µm, z, y, x.
    score : callable
        ``score(A) -> float`` for a 4x4 fixed->moving affine; lower is better
        (e.g. ``ncc_score(...)``).
    iterations : int, default 500
        Number of candidates, including the first (initial) one.
    max_translation_um : float or (3,) float, optional
        Bound on |translation| per axis, µm, z, y, x. Default: 25 % of the
        fixed field of view per axis.
    max_rotation_rad : float, default 0.25
        Bound on each component (z, y, x) of the rotation vector, radians.
    max_scale : float, default 1.1
        Scales (per axis) are drawn log-uniformly in [1/max_scale, max_scale]; 1 fixes them.
    max_shear : float, default 0.05
        Bound on the three upper off-diagonal shear terms.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the result is deterministic.
    initial : (4, 4) array, optional
        Starting affine (default identity).

    Returns
    -------
    A : (4, 4) float64, best fixed->moving affine found.
    best_score : float
    """
    fs = _spacing(fix_spacing)
    centre = _centre_um(np.shape(fix), fs)
    if max_translation_um is None:
        max_translation_um = 0.25 * (np.asarray(np.shape(fix)[:3]) - 1) * fs
    initial = np.eye(4) if initial is None else _check_affine(initial)
    rng = np.random.default_rng(seed)
    params = _random_parameters(rng, max(int(iterations) - 1, 0),
                                np.asarray(max_translation_um, dtype=np.float64),
                                float(max_rotation_rad), float(max_scale), float(max_shear))
    best_A, best = initial.copy(), float(score(initial))
    for t, angles, scales, shears in zip(*params):
        A = initial @ _about_centre(_linear(angles, scales, shears), t, centre)
        value = float(score(A))
        if value < best:
            best_A, best = A, value
    return best_A, best


def _sample_grid(shape, nsamples, rng):
    """Flat voxel indices of a deterministic random subset of a grid (sorted)."""
    size = int(np.prod(shape))
    if nsamples is None or nsamples >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=int(nsamples), replace=False))


def ncc_score(fix, mov, fix_spacing, mov_spacing, *, nsamples=100_000, seed=0,
              min_overlap=0.1, smooth_um=None):
    """Build ``score(A) = -NCC(fix, mov o A)`` for ``random_affine_search``.

    The moving image is sampled (trilinear, ``scipy.ndimage.map_coordinates``)
    at ``A @ x`` for fixed voxel centres x; only samples landing inside the
    moving grid count.

    Parameters
    ----------
    fix, mov : (Z, Y, X) arrays
    fix_spacing, mov_spacing : (3,) float, µm, z, y, x.
    nsamples : int or None, default 100000
        Number of fixed voxels used (a seeded random subset; None: all).
    seed : int, default 0
    min_overlap : float, default 0.1
        If fewer than this fraction of the samples land inside the moving
        image the score is 0.0 (no evidence), i.e. worse than any positive
        correlation.
    smooth_um : float, optional
        Gaussian sigma in µm applied to both images first; widens the capture
        range of a search on sparse, spotty images (e.g. about a nucleus radius).

    Returns
    -------
    callable ``score(A) -> float`` in [-1, 1], lower is better.
    """
    fs, ms = _spacing(fix_spacing), _spacing(mov_spacing)
    fix = np.asarray(fix, dtype=np.float32)
    mov = np.asarray(mov, dtype=np.float32)
    if smooth_um:
        fix = ndi.gaussian_filter(fix, float(smooth_um) / fs)
        mov = ndi.gaussian_filter(mov, float(smooth_um) / ms)
    flat = _sample_grid(fix.shape, nsamples, np.random.default_rng(seed))
    points = np.stack(np.unravel_index(flat, fix.shape), axis=1) * fs
    values = fix.reshape(-1)[flat].astype(np.float64)
    upper = np.asarray(mov.shape) - 1.0
    need = max(int(min_overlap * len(flat)), 16)

    def score(A):
        coords = apply_affine(_check_affine(A), points) / ms
        inside = np.all((coords >= 0) & (coords <= upper), axis=1)
        if inside.sum() < need:
            return 0.0
        m = ndi.map_coordinates(mov, coords[inside].T, order=1).astype(np.float64)
        return -ncc(values[inside], m)

    return score


# ---------------------------------------------------------------------------
# 7. phase correlation
# ---------------------------------------------------------------------------

def _resample_to(image, spacing, target):
    """Resample a (Z, Y, X) image to ``target`` spacing (µm), same origin.

    Anti-aliased by a Gaussian where the grid gets coarser; trilinear.
    """
    factor = target / spacing
    shape = np.floor((np.asarray(image.shape) - 1) / factor).astype(int) + 1
    sigma = 0.5 * np.sqrt(np.maximum(factor ** 2 - 1.0, 0.0))
    img = np.asarray(image, dtype=np.float32)
    if np.any(sigma > 0):
        img = ndi.gaussian_filter(img, sigma)
    return ndi.affine_transform(img, factor, output_shape=tuple(shape), order=1, mode="nearest")


def _padded(image, shape):
    """Mean-subtracted image zero-padded (at the end) to ``shape``."""
    out = np.zeros(shape, dtype=np.float32)
    out[tuple(slice(0, n) for n in image.shape)] = image - image.mean()
    return out


def _peak_shift(corr):
    """Sub-voxel position (3,) of the maximum of a circular correlation,
    wrapped to [-N/2, N/2) per axis."""
    shape = np.asarray(corr.shape)
    peak = np.array(np.unravel_index(int(np.argmax(corr)), corr.shape))
    shift = peak.astype(np.float64)
    for axis in range(3):
        lo, hi = peak.copy(), peak.copy()
        lo[axis], hi[axis] = (peak[axis] - 1) % shape[axis], (peak[axis] + 1) % shape[axis]
        shift[axis] += _parabolic_offset(corr[tuple(lo)], corr[tuple(peak)], corr[tuple(hi)])
    return (shift + shape / 2.0) % shape - shape / 2.0


def phase_correlation_translation(fix, mov, fix_spacing, mov_spacing, target_spacing=None):
    """Pure-translation affine (fixed -> moving, µm) by FFT phase correlation.

    Both images are resampled to a common grid (``target_spacing``, default
    the coarser of the two spacings per axis), mean-subtracted and zero-padded
    to a common FFT-friendly shape; the peak of the phase correlation is
    refined to sub-voxel precision by a parabola per axis.

    Parameters
    ----------
    fix, mov : (Z, Y, X) arrays
    fix_spacing, mov_spacing : (3,) float, µm, z, y, x.
    target_spacing : (3,) float, optional
        Spacing of the common grid, µm, z, y, x.

    Returns
    -------
    A : (4, 4) float64 with identity linear part and ``A[:3, 3] = t`` such that
    ``moving(x + t) ≈ fixed(x)``. Shifts are recovered when shorter than half
    the padded grid on each axis (the padded grid is at least the larger image
    plus 10 %, so shifts up to ~45 % of the field of view are safe).
    """
    fs, ms = _spacing(fix_spacing), _spacing(mov_spacing)
    target = np.maximum(fs, ms) if target_spacing is None else _spacing(target_spacing)
    f = _resample_to(fix, fs, target)
    m = _resample_to(mov, ms, target)
    shape = [sfft.next_fast_len(int(np.ceil(1.1 * max(a, b)))) for a, b in zip(f.shape, m.shape)]
    F = sfft.rfftn(_padded(f, shape))
    M = sfft.rfftn(_padded(m, shape))
    cross = M * np.conj(F)
    cross /= np.abs(cross) + 1e-12 * np.abs(cross).max()
    corr = sfft.irfftn(cross, s=shape)
    A = np.eye(4)
    A[:3, 3] = _peak_shift(corr) * target
    return A
