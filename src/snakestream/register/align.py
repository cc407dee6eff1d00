"""Registration of two in-memory images with SimpleITK, bigstream-style steps.

Images here are :class:`Image` records: a z,y,x numpy array with its spacing
and origin (µm, z,y,x) and an optional boolean mask on the same grid. Every
step returns a :class:`StepResult`; a step that raises, produces non-finite
numbers or makes its metric worse falls back to identity and says why.
"""

import functools
import time
from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk

from snakestream.errors import AlignmentError
from snakestream.grid.geometry import apply_affine, compose_affines
from snakestream.io import downsample
from snakestream.register import sitk_transforms as st
from snakestream.register.bspline_fit import fit as sparse_fit
from snakestream.register.steps import deform_engine

_METRIC = {
    "MMI": "SetMetricAsMattesMutualInformation",
    "MS": "SetMetricAsMeanSquares",
    "C": "SetMetricAsCorrelation",
    "ANC": "SetMetricAsANTSNeighborhoodCorrelation",
    "JHMI": "SetMetricAsJointHistogramMutualInformation",
}
_OPTIMIZER = {
    "RSGD": "SetOptimizerAsRegularStepGradientDescent",
    "GD": "SetOptimizerAsGradientDescent",
    "LBFGSB": "SetOptimizerAsLBFGSB",
}
_INTERPOLATOR = {"0": sitk.sitkNearestNeighbor, "1": sitk.sitkLinear, "CBS": sitk.sitkBSpline}
# the global stage logs an optimizer line every this many iterations (run_steps' log_every)
GLOBAL_LOG_EVERY = 50


@dataclass
class Image:
    """A z,y,x array placed in physical space (µm)."""

    data: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray = None
    mask: np.ndarray = None

    def __post_init__(self):
        self.spacing = np.asarray(self.spacing, dtype=float)
        self.origin = np.zeros(3) if self.origin is None else np.asarray(self.origin, float)

    def to_sitk(self):
        """Float32 SimpleITK image with x,y,z spacing/origin."""
        return _sitk_image(self.data.astype(np.float32, copy=False), self.spacing, self.origin)

    def mask_sitk(self):
        """uint8 SimpleITK mask, or None."""
        if self.mask is None:
            return None
        return _sitk_image(self.mask.astype(np.uint8), self.spacing, self.origin)

    def center(self):
        """Physical centre of the grid, µm z,y,x."""
        return self.origin + (np.array(self.data.shape) - 1) / 2 * self.spacing


@dataclass
class StepResult:
    """Outcome of one step: ``kind`` 'affine' or 'bspline' with its parameters."""

    name: str
    kind: str
    parameters: np.ndarray
    fixed_parameters: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qc: dict = field(default_factory=dict)

    def to_sitk(self):
        """The step's transform as a SimpleITK transform."""
        return st.to_sitk(self.kind, self.fixed_parameters, self.parameters)


def _sitk_image(array, spacing, origin):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(s) for s in spacing[::-1]])
    img.SetOrigin([float(o) for o in origin[::-1]])
    return img


def downsample_factors(spacing, alignment_spacing):
    """Integer block-mean factors per axis toward ``alignment_spacing`` µm.

    ``max(1, round(alignment_spacing / spacing))`` per axis (bigstream's rounding);
    all 1 when ``alignment_spacing`` is None or 0.
    """
    if not alignment_spacing:
        return np.ones(3, dtype=int)
    return np.maximum(np.round(float(alignment_spacing) / np.asarray(spacing)), 1).astype(int)


def in_local_frame(image, volume_origin):
    """`image` moved into its volume's local frame: the volume's voxel 0 at 0 µm.

    The stages register in these frames and convert the affine at their boundary
    (:func:`~snakestream.grid.geometry.to_frames` / ``to_local``). SimpleITK's
    optimisation with a moving initial transform is not translation-invariant
    (measured: a 5 µm shift of the fixed frame alone moved an affine step's result
    by ~2 % in metric), so registering in frames anchored at the volumes' voxel 0
    makes the volumes' origins relabel the result and nothing else.

    Parameters
    ----------
    image : Image
        Placed in the volume's physical frame (origin in µm, z,y,x).
    volume_origin : (3,) array
        The volume's origin, µm, z,y,x.

    Returns
    -------
    Image, the same data and mask with ``origin - volume_origin``.
    """
    return replace(image, origin=image.origin - np.asarray(volume_origin, float))


def block_mean(image, alignment_spacing):
    """Downsample an :class:`Image` by block averaging toward ``alignment_spacing`` µm.

    Parameters
    ----------
    image : Image
        z, y, x data (and optional mask) with spacing and origin in µm.
    alignment_spacing : float or None
        Target voxel size, µm; the factors are :func:`downsample_factors`.

    Returns
    -------
    Image with float32 data of shape ``ceil(shape / factors)`` (edge blocks average
    the voxels that exist), a mask that is set wherever any voxel of its block was,
    spacing ``spacing * factors`` and the origin moved to the centre of the first
    block. ``image`` itself when every factor is 1.
    """
    factors = downsample_factors(image.spacing, alignment_spacing)
    if np.all(factors == 1):
        return image
    data = downsample.block_mean(image.data, factors)
    mask = None if image.mask is None else downsample.block_max(image.mask, factors)
    origin = image.origin + (factors - 1) / 2 * image.spacing
    return Image(data, image.spacing * factors, origin, mask)


def configure(params, seed=0, threads=1):
    """A ``sitk.ImageRegistrationMethod`` set up from one step's parameters."""
    irm = sitk.ImageRegistrationMethod()
    irm.SetNumberOfThreads(int(threads))
    irm.SetInterpolator(_INTERPOLATOR[params["interpolator"]])
    getattr(irm, _METRIC[params["metric"]])(**params["metric_args"])
    strategy = {"NONE": irm.NONE, "REGULAR": irm.REGULAR, "RANDOM": irm.RANDOM}
    irm.SetMetricSamplingStrategy(strategy[params["sampling"]])
    if params["sampling"] != "NONE":
        irm.SetMetricSamplingPercentage(float(params["sampling_percentage"]), int(seed))
    getattr(irm, _OPTIMIZER[params["optimizer"]])(**params["optimizer_args"])
    irm.SetShrinkFactorsPerLevel([int(f) for f in params["shrink_factors"]])
    irm.SetSmoothingSigmasPerLevel([float(s) for s in params["smooth_sigmas"]])
    irm.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return irm


def watch_optimizer(irm, label, *, log, every, shrinks):
    """Log a SimpleITK registration while it runs: each pyramid level as it starts, and
    every ``every`` iterations the level, iteration, metric value and elapsed seconds.

    Parameters
    ----------
    irm : sitk.ImageRegistrationMethod
        Configured, not yet executed.
    label : str
        Names the step in each line (``affine``, ``rigid [context]``).
    log : callable
        Receives each line.
    every : int
        Iterations between two lines (>= 1).
    shrinks : sequence of int
        The step's shrink factors, one per level (SimpleITK has no getter).
    """
    t0 = time.perf_counter()

    def on_level():
        level = irm.GetCurrentLevel()
        log(f"{label}: pyramid level {level + 1} of {len(shrinks)} (shrink "
            f"{shrinks[min(level, len(shrinks) - 1)]}) at {time.perf_counter() - t0:.1f} s")

    def on_iteration():
        i = irm.GetOptimizerIteration()
        if i % every == 0:
            log(f"{label}: level {irm.GetCurrentLevel() + 1} iteration {i} metric "
                f"{irm.GetMetricValue():.6g} at {time.perf_counter() - t0:.1f} s")

    def guarded(command):  # a failing progress line must never fail the registration
        def run():
            try:
                command()
            except Exception as err:  # noqa: BLE001
                log(f"{label}: progress line failed: {err}")
        return run

    irm.AddCommand(sitk.sitkMultiResolutionIterationEvent, guarded(on_level))
    irm.AddCommand(sitk.sitkIterationEvent, guarded(on_iteration))


def _set_masks(irm, fix_sitk_mask, mov_sitk_mask):
    if fix_sitk_mask is not None:
        irm.SetMetricFixedMask(fix_sitk_mask)
    if mov_sitk_mask is not None:
        irm.SetMetricMovingMask(mov_sitk_mask)


def center_of_mass(image):
    """Intensity-weighted centre (µm, z,y,x), restricted to the mask if any."""
    data = image.data.astype(np.float64)
    if image.mask is not None:
        data = data * (image.mask > 0)
    data = data - data.min()
    total = data.sum()
    if total <= 0:
        return image.center()
    idx = np.indices(data.shape, dtype=np.float64).reshape(3, -1)
    return image.origin + (idx @ data.ravel()) / total * image.spacing


def initial_matrix(params, fix, mov, static):
    """Starting 4x4 for a rigid/affine step, relative to ``static`` (bigstream's meaning).

    ``CENTER`` aligns centres of mass (moments), ``PHASE`` uses phase correlation of
    the images, a matrix is used as given, ``None`` starts from identity.
    """
    init = params.get("initial_condition")
    if init is None:
        return np.eye(4)
    if isinstance(init, str) and init == "PHASE":
        from snakestream.register.feature_align import phase_start
        return np.linalg.inv(static) @ phase_start(fix, mov)
    if isinstance(init, str):  # CENTER
        c_fix, c_mov = center_of_mass(fix), center_of_mass(mov)
        out = np.eye(4)
        out[:3, 3] = apply_affine(np.linalg.inv(static), c_mov[None])[0] - c_fix
        return out
    return np.asarray(init, dtype=float)


def _optimizable(name, matrix, center):
    """Euler3D (rigid) or Affine SimpleITK transform starting at ``matrix``."""
    start = st.affine_to_sitk(matrix)
    start.SetCenter(center[::-1].tolist())
    start.SetTranslation((np.array(start.GetTranslation())
                          - np.array(center[::-1]) + np.array(start.GetMatrix()).reshape(3, 3)
                          @ center[::-1]).tolist())
    if name == "affine":
        return start
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(start.GetCenter())
    rigid.SetMatrix(_nearest_rotation(np.array(start.GetMatrix()).reshape(3, 3)).ravel().tolist())
    rigid.SetTranslation(start.GetTranslation())
    return rigid


def _nearest_rotation(m):
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _bspline(fix_img, params):
    """Initial B-spline over the fixed image, mesh from control_point_spacing (µm)."""
    coarsest = params["control_point_spacing"] * params["control_point_levels"][-1]
    extent = np.array(fix_img.GetSize()) * np.array(fix_img.GetSpacing())
    mesh = [max(1, int(e / coarsest)) for e in extent]
    return sitk.BSplineTransformInitializer(fix_img, mesh, order=3)


def static_affine(static):
    """Product of the affine members of a static transform list (4x4, z,y,x)."""
    mats = [np.asarray(s.parameters).reshape(4, 4) for s in static if s.kind == "affine"]
    return compose_affines(*mats)


def run_step(name, params, fix, mov, static=(), *, seed=0, threads=1, log=None,
             log_every=0):
    """Run one registration step; never raises for a registration failure
    (unless the step sets bigstream's ``safeguard_exceptions: true``).

    Parameters
    ----------
    name : {'rigid', 'affine', 'deform', 'ransac', 'random'}
    params : dict
        Normalised step settings (see :mod:`snakestream.register.steps`).
    fix, mov : Image
        Fixed and moving images (masks already attached or None).
    static : sequence of StepResult
        Transforms already found; the new one is applied before them
        (``x -> static(new(x))``), as bigstream's ``static_transform_list``.
    seed : int
        Seed for random metric sampling (use the block id for reproducibility).
    threads : int
        Threads SimpleITK may use.
    log : callable, optional
        Receives progress lines while the step runs (:func:`watch_optimizer`; the
        feature steps' stages), when ``log_every`` > 0.
    log_every : int
        Optimizer iterations between two progress lines; 0: no progress lines.

    Returns
    -------
    StepResult with ``qc`` keys: step, status ('ok' or 'fallback'), reason,
    metric_before, metric_after, iterations, stop, seconds. A fallback is the
    step's ``default`` matrix when it has one (bigstream's meaning), else the
    transform it started from.

    Raises
    ------
    AlignmentError
        The step failed and its ``safeguard_exceptions`` is true.
    """
    t0 = time.perf_counter()
    label = name + (f" [{params['context']}]" if params.get("context") else "")
    watch = (functools.partial(watch_optimizer, label=label, log=log, every=int(log_every),
                               shrinks=list(params.get("shrink_factors") or [1]))
             if log is not None and log_every > 0 else None)
    try:
        result = _STEP_RUNNERS[name](name, params, fix, mov, list(static), seed=seed,
                                     threads=threads, watch=watch)
    except Exception as err:  # SimpleITK raises RuntimeError with long text
        result = _fallback(name, "error: " + str(err).strip().splitlines()[-1][:200])
    result.qc.setdefault("status", "ok")
    result.qc.update(step=name, seconds=round(time.perf_counter() - t0, 3))
    if result.qc["status"] == "ok" and not np.all(np.isfinite(result.parameters)):
        result = _fallback(name, "non-finite parameters", result.qc)
    if result.qc["status"] == "fallback":
        result = _step_default(name, params, result)
    return result


def _step_default(name, params, result):
    """A failed step's result under bigstream's ``default`` and ``safeguard_exceptions``."""
    if params.get("safeguard_exceptions"):
        raise AlignmentError(f"{name} step", result.qc["reason"],
                             "set safeguard_exceptions: false to continue with the "
                             "step's default instead.")
    if params.get("default") is None:
        return result
    qc = dict(result.qc, reason=result.qc["reason"] + "; returned the step's default")
    return StepResult(name, "affine", np.asarray(params["default"], float).ravel(), qc=qc)


def _fallback(name, reason, qc=None, start=None):
    qc = dict(qc or {}, status="fallback", reason=reason)
    if name == "deform":
        return StepResult(name, "affine", np.eye(4).ravel(), qc=qc)
    matrix = np.eye(4) if start is None else start
    return StepResult(name, "affine", matrix.ravel(), qc=qc)


def _worse(params, qc):
    """Whether a step's result must be dropped: its metric did not improve and the step
    keeps bigstream's ``final_metric_check`` (feature steps always check)."""
    return params.get("final_metric_check", True) and not qc["metric_after"] < qc["metric_before"]


def _step_images(params, fix, mov):
    """Images at the step's alignment spacing with the step's masks (:func:`step_mask`)."""
    f = block_mean(fix, params["alignment_spacing"])
    m = block_mean(mov, params["alignment_spacing"])
    return (replace(f, mask=step_mask(f, params.get("fix_mask"))),
            replace(m, mask=step_mask(m, params.get("mov_mask"))))


def step_mask(image, setting):
    """The mask a step uses on ``image`` (bigstream's ``fix_mask``/``mov_mask``).

    Parameters
    ----------
    image : Image
        At the step's alignment spacing, with the configured mask or None.
    setting : None, bool or list of float
        None or true: the configured mask; false: none; a list: bigstream's tuple of
        background intensities, i.e. foreground where the (block-averaged) value is
        none of them, so a block is foreground when any of its voxels is.

    Returns
    -------
    (Z, Y, X) bool array or None.
    """
    if setting is None or setting is True:
        return image.mask
    if setting is False:
        return None
    return ~np.isin(image.data, np.asarray(setting, dtype=image.data.dtype))


def _prepare(params, fix, mov, static, seed, threads):
    f, m = _step_images(params, fix, mov)
    irm = configure(params, seed, threads)
    _set_masks(irm, f.mask_sitk(), m.mask_sitk())
    if static:
        irm.SetMovingInitialTransform(st.composite([s.to_sitk() for s in static]))
    return irm, f, m


def _metric_value(irm, f_img, m_img):
    """The metric at the current transform, without ITK's gradient images.

    A value needs no gradients, and building the two gradient images costs ~5x
    the evaluation itself (0.2 s vs 0.04 s on a 32x96x96 block).
    """
    irm.SetMetricUseFixedImageGradientFilter(False)
    irm.SetMetricUseMovingImageGradientFilter(False)
    value = irm.MetricEvaluate(f_img, m_img)
    irm.SetMetricUseFixedImageGradientFilter(True)  # ITK's defaults, for Execute
    irm.SetMetricUseMovingImageGradientFilter(True)
    return value


def _execute(irm, f_img, m_img, watch=None):
    before = _metric_value(irm, f_img, m_img)
    if watch is not None:
        watch(irm)
    irm.Execute(f_img, m_img)
    after = _metric_value(irm, f_img, m_img)
    return {"metric_before": float(before), "metric_after": float(after),
            "iterations": int(irm.GetOptimizerIteration()),
            "stop": irm.GetOptimizerStopConditionDescription().strip()[:200]}


def _run_linear(name, params, fix, mov, static, *, seed, threads, watch=None):
    irm, f, m = _prepare(params, fix, mov, static, seed, threads)
    start = initial_matrix(params, f, m, static_affine(static))
    opt = _optimizable(name, start, f.center())
    irm.SetInitialTransform(opt, inPlace=True)
    irm.SetOptimizerScalesFromPhysicalShift()
    qc = _execute(irm, f.to_sitk(), m.to_sitk(), watch)
    if _worse(params, qc):
        return _fallback(name, "metric did not improve; kept the starting transform", qc, start)
    return StepResult(name, "affine", st.sitk_to_affine(opt).ravel(), qc=qc)


def _run_deform(name, params, fix, mov, static, *, seed, threads, watch=None):
    """B-spline step: the sparse engine where it applies (``engine: auto``), else ITK's."""
    engine, why_not = deform_engine(params, [s.kind for s in static])
    if engine == "itk":
        result = _run_deform_itk(name, params, fix, mov, static, seed=seed, threads=threads,
                                 watch=watch)
        result.qc.update(engine="itk", **({"engine_reason": why_not} if why_not else {}))
        return result
    return _run_deform_sparse(name, params, fix, mov, static, seed)


def _run_deform_sparse(name, params, fix, mov, static, seed):
    f, m = _step_images(params, fix, mov)
    fixed_parameters = np.array(_bspline(f.to_sitk(), params).GetFixedParameters())
    parameters, qc = sparse_fit(params, f, m, static_affine(static), fixed_parameters, seed)
    if _worse(params, qc):
        return _fallback(name, "metric did not improve; identity kept", qc)
    return StepResult(name, "bspline", parameters, fixed_parameters, qc=qc)


def _run_deform_itk(name, params, fix, mov, static, *, seed, threads, watch=None):
    irm, f, m = _prepare(params, fix, mov, static, seed, threads)
    f_img = f.to_sitk()
    bspline = _bspline(f_img, params)
    irm.SetInitialTransformAsBSpline(bspline, inPlace=True,
                                     scaleFactors=params["control_point_levels"])
    qc = _execute(irm, f_img, m.to_sitk(), watch)
    if _worse(params, qc):
        return _fallback(name, "metric did not improve; identity kept", qc)
    return StepResult(name, "bspline", np.array(bspline.GetParameters()),
                      np.array(bspline.GetFixedParameters()), qc=qc)


def _run_feature(name, params, fix, mov, static, *, seed, threads, watch=None):
    from snakestream.register.feature_align import run_feature_step

    f, m = _step_images(params, fix, mov)
    prior = static_affine(static)
    qc = {}
    log = watch.keywords["log"] if watch is not None else None  # stages, not iterations
    total = run_feature_step(name, params, f, m, prior, seed=seed, qc=qc, log=log)
    if _worse(params, qc):
        return _fallback(name, "-NCC did not improve; kept the starting transform", qc)
    relative = np.linalg.inv(prior) @ total
    return StepResult(name, "affine", relative.ravel(), qc=qc)


_STEP_RUNNERS = {"rigid": _run_linear, "affine": _run_linear, "deform": _run_deform,
                 "ransac": _run_feature, "random": _run_feature}


def run_steps(steps, fix, mov, static=(), *, seed=0, threads=1, log=print, log_every=0):
    """Run a normalised step list, each step starting from all earlier ones.

    Parameters
    ----------
    steps : list of (name, dict)
        Normalised steps (:func:`~snakestream.register.steps.normalize_steps`).
    fix, mov : Image
        Fixed and moving images (z, y, x, spacing and origin in µm).
    static : sequence of StepResult
        Transforms the first step starts from (e.g. the global affine).
    seed, threads
        As in :func:`run_step`.
    log : callable
        Receives one line per step, and progress lines with ``log_every``.
    log_every : int
        As in :func:`run_step` (the global stage: :data:`GLOBAL_LOG_EVERY`).

    Returns
    -------
    list of StepResult, the new transforms in order (bigstream's ``alignment_pipeline``).
    """
    static, results = list(static), []
    for name, params in steps:
        tag = f" [{params['context']}]" if params.get("context") else ""
        step_log = (lambda line, tag=tag: log(f"{line}{tag}")) if tag else log  # noqa: E731
        result = run_step(name, params, fix, mov, static, seed=seed, threads=threads,
                          log=step_log, log_every=log_every)
        log(f"step {name}{tag}: {result.qc}")
        static.append(result)
        results.append(result)
    return results
