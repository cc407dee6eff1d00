"""Alignment step dictionaries: bigstream's names, meanings and defaults.

A step is ``[name, kwargs]`` (or ``{name: kwargs}``) exactly as written in
bigstream's ``alignment_pipeline(steps=...)``. :func:`normalize_steps` checks
every key, fills bigstream's defaults and returns plain dictionaries.

Defaults that differ from bigstream (and why):

* ``deform`` steps sample 5 % of voxels at random (``sampling: RANDOM``,
  ``sampling_percentage: 0.05``), seeded from the block id so reruns are
  bit-identical. bigstream uses every voxel, which is ~50x slower for the
  same accuracy on B-spline problems.
* ``deform`` steps do not estimate optimiser scales by physical shift: for a
  B-spline every parameter is already a displacement in µm, and the estimate
  costs more than the registration on small blocks.
* ``deform`` steps run on snakestream's sparse-Jacobian B-spline engine
  (:mod:`snakestream.register.bspline`) when it covers the settings (metric C, MS or MMI,
  RSGD, linear interpolation, one pyramid level at shrink 1): ~100x faster per
  iteration than SimpleITK's, same grid and parameters. ``engine: itk`` forces
  SimpleITK; ``engine: auto`` (default) uses it for anything else.
* Images are downsampled to ``alignment_spacing`` by block averaging
  (anti-aliased) rather than skip-sampling.
* ``ransac`` fails below 12 spots per image and 12 matches (bigstream: 100 and
  50): blocks are small, and a wrong fit is still caught by -NCC and
  ``diagonal_constraint``. ``safeguard_exceptions`` defaults to false (a failed
  step falls back, as in bigstream's distributed runs).
* ``random`` bounds left unset are searched a little (``RANDOM_BOUNDS`` in
  :mod:`snakestream.register.feature_align`; translation 25 % of the field);
  bigstream does not search them. Give 0 (1 for ``max_scale``) for that.

* ``fix_origin`` / ``mov_origin`` null means the volume's own origin (its metadata
  or config ``origin``): a step's ``initial_condition`` / ``default`` matrix is then
  written in the volumes' physical frames, as every affine file of the pipeline is.
  bigstream reads no origin metadata, so there null means 0. A given origin names
  the frame the matrix is written in (voxel 0 at that position);
  :func:`normalize_steps` rewrites it to voxel 0 at 0 µm, the frames the stages
  register in, and :func:`in_local_frames` does the same for a null side once the
  volumes (their origins) are open.

Every key of bigstream 5.x's step functions, and what it maps to, is listed in
docs/bigstream-keys.md.
"""

import copy

import numpy as np

from snakestream.errors import ConfigError
from snakestream.grid.geometry import translation

REGISTRATION_STEPS = ("rigid", "affine", "deform")
FEATURE_STEPS = ("ransac", "random")
ALL_STEPS = FEATURE_STEPS + REGISTRATION_STEPS

METRICS = ("MMI", "MS", "C", "ANC", "JHMI")
SAMPLING = ("NONE", "REGULAR", "RANDOM")
INTERPOLATORS = ("0", "1", "CBS")

# keyword arguments each optimiser accepts (SimpleITK's SetOptimizerAs* names)
OPTIMIZER_ARGS = {
    "RSGD": {"learningRate", "minStep", "numberOfIterations", "relaxationFactor",
             "gradientMagnitudeTolerance", "estimateLearningRate",
             "maximumStepSizeInPhysicalUnits"},
    "GD": {"learningRate", "numberOfIterations", "convergenceMinimumValue",
           "convergenceWindowSize", "estimateLearningRate",
           "maximumStepSizeInPhysicalUnits"},
    "LBFGSB": {"gradientConvergenceTolerance", "numberOfIterations",
               "maximumNumberOfCorrections", "maximumNumberOfFunctionEvaluations",
               "costFunctionConvergenceFactor", "lowerBound", "upperBound", "trace"},
}
OPTIMIZER_DEFAULTS = {  # bigstream's configure_irm defaults
    "RSGD": {"learningRate": 0.25, "minStep": 0.0, "numberOfIterations": 100},
    "GD": {"learningRate": 0.25, "numberOfIterations": 100},
    "LBFGSB": {},
}
METRIC_ARGS = {
    "MMI": {"numberOfHistogramBins"}, "MS": set(), "C": set(),
    "ANC": {"radius"}, "JHMI": {"numberOfHistogramBins", "varianceForJointPDFSmoothing"},
}
METRIC_DEFAULTS = {"ANC": {"radius": 12}}

# keys of every bigstream step; see _check_every_step for the values snakestream takes
EVERY_STEP = {
    "alignment_spacing": None,
    "fix_mask": None,
    "mov_mask": None,
    "fix_origin": None,
    "mov_origin": None,
    "static_transform_list": None,
    "default": None,
    "context": None,
}
COMMON = {
    **EVERY_STEP,
    "shrink_factors": [1],
    "smooth_sigmas": [0.0],
    "optimizer": "RSGD",
    "optimizer_args": {},
    "metric": "MMI",
    "metric_args": {},
    "sampling": "NONE",
    "sampling_percentage": None,
    "interpolator": "1",
    "callback": None,
    "final_metric_check": True,
}
PER_STEP = {
    "rigid": {"initial_condition": None, "rigid": True},
    "affine": {"initial_condition": None, "rigid": False},
    "deform": {"control_point_spacing": None, "control_point_levels": [1],
               "sampling": "RANDOM", "sampling_percentage": 0.05, "engine": "auto"},
    # bigstream's feature_point_ransac_affine_align; blob_radius and max_scale_change are
    # snakestream's µm/scale alternatives. cc_radius None: 12 vox with blob_sizes,
    # 3 x blob_radius with blob_radius. The failure counts default to 12, not 100/50.
    "ransac": {"blob_sizes": None, "blob_radius": None, "num_sigma_max": 15,
               "cc_radius": None, "nspots": 5000, "match_threshold": 0.7,
               "max_spot_match_distance": None, "point_matches_threshold": 12,
               "align_threshold": 2.0, "diagonal_constraint": 0.25,
               "fix_spots": None, "mov_spots": None,
               "fix_spots_count_threshold": 12, "mov_spots_count_threshold": 12,
               "fix_spot_detection_kwargs": {}, "mov_spot_detection_kwargs": {},
               "safeguard_exceptions": False, "max_scale_change": 2.0},
    # bigstream's random_affine_search; unset bounds get snakestream's defaults
    # (bigstream: not searched), see feature_align
    "random": {"random_iterations": 500, "nreturn": 1, "max_translation": None,
               "max_rotation": None, "max_scale": None, "max_shear": None,
               "use_patch_mutual_information": False},
}
BLOB_RADIUS_UM = 2.0  # ransac without blob_sizes or blob_radius
CC_RADIUS_VOX = 12  # bigstream's cc_radius default (with blob_sizes)
# keys passed on to bigstream's spot detector (skimage blob_log) that snakestream's takes
SPOT_DETECTION_KEYS = ("threshold",)
INITIAL_CONDITIONS = ("CENTER", "PHASE")
ENGINES = ("auto", "sparse", "itk")


def defaults_for(name):
    """Full default dictionary of a step type."""
    if name in FEATURE_STEPS:
        return copy.deepcopy({**EVERY_STEP, **PER_STEP[name]})
    return copy.deepcopy({**COMMON, **PER_STEP[name]})


def normalize_steps(steps, where, allowed=ALL_STEPS):
    """Validate a bigstream step list and fill defaults.

    Parameters
    ----------
    steps : list
        ``[[name, kwargs], ...]`` or ``[{name: kwargs}, ...]``.
    where : str
        Config location used in error messages, e.g. ``'blocks.steps'``.
    allowed : tuple of str
        Step names permitted here.

    Returns
    -------
    list of (name, dict)
    """
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ConfigError(where, "must be a non-empty list of [name, {settings}] steps.",
                          "write e.g. `- [affine, {alignment_spacing: 2.0}]`.")
    return [_normalize_step(step, f"{where}[{i}]", allowed) for i, step in enumerate(steps)]


def _split_step(step, where):
    if isinstance(step, dict) and len(step) == 1:
        (name, kwargs), = step.items()
    elif isinstance(step, (list, tuple)) and len(step) in (1, 2):
        name, kwargs = step[0], (step[1] if len(step) == 2 else {})
    else:
        raise ConfigError(where, f"a step must be [name, {{settings}}], got {step!r}.",
                          "write e.g. `- [affine, {alignment_spacing: 2.0}]`.")
    return name, ({} if kwargs is None else kwargs)


def _normalize_step(step, where, allowed):
    name, kwargs = _split_step(step, where)
    if name not in allowed:
        hint = " deform steps belong under blocks.steps." if name == "deform" else ""
        raise ConfigError(where, f"unknown step {name!r} here.{hint}",
                          f"use one of: {', '.join(allowed)}.")
    if not isinstance(kwargs, dict):
        raise ConfigError(where, f"settings of step {name!r} must be a mapping.")
    params = defaults_for(name)
    for key, value in kwargs.items():
        if key not in params:
            raise ConfigError(f"{where}.{key}", f"unknown key {key!r} for step {name!r}.",
                              f"valid keys: {', '.join(sorted(params))}.")
        params[key] = value
    _check_every_step(params, where)
    if name in REGISTRATION_STEPS:
        _check_registration(name, params, where)
        if name != "deform":
            name = _rigid_name(name, params, where)
    else:
        _check_feature(name, params, where)
    return name, params


def _check_every_step(params, where):
    """Keys of every bigstream step: masks, origins, static list, default, context."""
    for key in ("fix_mask", "mov_mask"):
        params[key] = _step_mask(params[key], f"{where}.{key}")
    origins = [_origin(params[key], f"{where}.{key}") for key in ("fix_origin", "mov_origin")]
    if params["static_transform_list"]:
        raise ConfigError(f"{where}.static_transform_list",
                          "is filled by the pipeline (earlier steps, and the global affine "
                          "for block steps), as in bigstream's alignment_pipeline.",
                          "remove it; give a starting matrix as initial_condition instead.")
    params["static_transform_list"] = None
    if params["default"] is not None:
        params["default"] = _reframed(
            _matrix(params["default"], f"{where}.default", "null or a 4x4 matrix"),
            *origins, to=np.zeros(3)).tolist()
    if params.get("initial_condition") is not None and \
            not isinstance(params["initial_condition"], str):
        params["initial_condition"] = _reframed(
            _matrix(params["initial_condition"], f"{where}.initial_condition",
                    "CENTER, PHASE, null or a 4x4 matrix"), *origins, to=np.zeros(3)).tolist()
    for key, origin in zip(("fix_origin", "mov_origin"), origins):
        # given: the matrices above are now written for voxel 0 at 0 µm on that side
        params[key] = None if origin is None else [0.0, 0.0, 0.0]
    if params["context"] is not None:
        params["context"] = str(params["context"])


def _step_mask(value, where):
    """null/true (the configured mask), false (none) or a list of background values."""
    if value is None or isinstance(value, bool):
        return value
    values = value if isinstance(value, (list, tuple)) else None
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    raise ConfigError(where, f"{value!r}: a step mask is null/true (the configured mask), "
                      "false (no mask) or a list of background intensity values.",
                      "give a mask file as fixed.mask / moving.mask of the volume entry.")


def _origin(value, where):
    """(3,) µm origin (z, y, x) of bigstream's fix_origin/mov_origin; None for null
    (the volume's own origin)."""
    if value is None:
        return None
    try:
        origin = np.asarray(value, dtype=float).reshape(3)
        assert np.all(np.isfinite(origin))
    except Exception:
        raise ConfigError(where, f"{value!r}: must be three numbers (µm, z, y, x) or null.") \
            from None
    return origin


def _matrix(value, where, what):
    try:
        matrix = np.asarray(value, dtype=float)
        assert matrix.shape == (4, 4) and np.all(np.isfinite(matrix))
    except Exception:
        raise ConfigError(where, f"must be {what}, got {value!r}.") from None
    return matrix


def _reframed(matrix, fix_origin, mov_origin, *, to, to_mov=None):
    """A fixed -> moving matrix written for voxel 0 at ``fix_origin`` / ``mov_origin`` (µm,
    z, y, x; None: leave that side's frame as it is), rewritten for voxel 0 at ``to`` /
    ``to_mov`` (default ``to``): ``T(to_mov - mov_origin) @ M @ T(fix_origin - to)``."""
    to_mov = to if to_mov is None else to_mov
    out = np.asarray(matrix, dtype=float)
    if fix_origin is not None:
        out = out @ translation(np.asarray(fix_origin, float) - to)
    if mov_origin is not None:
        out = translation(np.asarray(to_mov, float) - mov_origin) @ out
    return out


def in_local_frames(steps, fix_origin, mov_origin):
    """Normalised steps with their matrices in the volumes' local frames (voxel 0 at 0 µm).

    The stages register in those frames (:func:`~snakestream.register.align.in_local_frame`).
    A step's ``initial_condition`` / ``default`` matrix is written for voxel 0 at
    0 µm already on a side whose ``fix_origin`` / ``mov_origin`` was given
    (:func:`normalize_steps`), and in the volume's physical frame (its origin) on a
    side where it was null; this moves the null sides too.

    Parameters
    ----------
    steps : list of (name, dict)
        From :func:`normalize_steps` (not changed).
    fix_origin, mov_origin : sequence of 3 float
        The fixed and moving volumes' origins, µm, z, y, x.

    Returns
    -------
    list of (name, dict)
        Copies, every matrix as a nested 4x4 list and ``fix_origin`` /
        ``mov_origin`` None (applied).
    """
    out = []
    for name, params in steps:
        params = copy.deepcopy(params)
        sides = [np.asarray(origin, float) if params.get(k) is None else None
                 for k, origin in (("fix_origin", fix_origin), ("mov_origin", mov_origin))]
        for key in ("default", "initial_condition"):
            value = params.get(key)
            if value is not None and not isinstance(value, str):
                params[key] = _reframed(value, *sides, to=np.zeros(3)).tolist()
        params["fix_origin"] = params["mov_origin"] = None
        out.append((name, params))
    return out


def _rigid_name(name, params, where):
    """bigstream's ``rigid`` key: an affine step with ``rigid: true`` is a rigid step."""
    if not isinstance(params["rigid"], bool):
        raise ConfigError(f"{where}.rigid", f"{params['rigid']!r}: must be true or false.")
    if name == "rigid":
        params["rigid"] = True  # bigstream's rigid step sets it whatever was given
    return "rigid" if params["rigid"] else name


def _check_registration(name, params, where):
    _check_choice(params, "metric", METRICS, where)
    _check_choice(params, "sampling", SAMPLING, where)
    _check_choice(params, "interpolator", INTERPOLATORS, where, transform=str)
    _check_choice(params, "optimizer", tuple(OPTIMIZER_ARGS), where)
    params["optimizer_args"] = _merged_args(
        params["optimizer_args"], OPTIMIZER_ARGS[params["optimizer"]],
        OPTIMIZER_DEFAULTS[params["optimizer"]], f"{where}.optimizer_args")
    params["metric_args"] = _merged_args(
        params["metric_args"], METRIC_ARGS[params["metric"]],
        METRIC_DEFAULTS.get(params["metric"], {}), f"{where}.metric_args")
    params["shrink_factors"] = _int_list(params["shrink_factors"], f"{where}.shrink_factors")
    params["smooth_sigmas"] = [float(s) for s in _as_list(params["smooth_sigmas"])]
    if len(params["smooth_sigmas"]) != len(params["shrink_factors"]):
        raise ConfigError(f"{where}.smooth_sigmas",
                          "needs one value per shrink factor (bigstream's rule).",
                          "give smooth_sigmas and shrink_factors the same length.")
    if params["sampling"] != "NONE":
        pct = params["sampling_percentage"]
        if pct is None or not 0 < float(pct) <= 1:
            raise ConfigError(f"{where}.sampling_percentage",
                              f"must be a fraction in (0, 1] with sampling {params['sampling']}.",
                              "e.g. 0.05 for 5 % of voxels.")
    spacing = params["alignment_spacing"]
    if spacing is not None and not float(spacing) > 0:
        raise ConfigError(f"{where}.alignment_spacing", "must be a positive µm value or null.")
    if params["callback"] is not None:
        raise ConfigError(f"{where}.callback", "a Python callable cannot be given in a config.",
                          "remove it; each step's QC line (metric before/after, iterations, "
                          "stop condition) is written to the log.")
    if not isinstance(params["final_metric_check"], bool):
        raise ConfigError(f"{where}.final_metric_check", "must be true or false.")
    if name == "deform":
        _check_deform(params, where)
    else:
        _check_initial(params, where)


def _check_deform(params, where):
    cps = params["control_point_spacing"]
    if cps is None or not float(cps) > 0:
        raise ConfigError(f"{where}.control_point_spacing",
                          "is required for deform steps (µm between B-spline control points).",
                          "add e.g. `control_point_spacing: 3.0`.")
    params["control_point_spacing"] = float(cps)
    levels = _int_list(params["control_point_levels"], f"{where}.control_point_levels")
    if len(levels) != len(params["shrink_factors"]):
        raise ConfigError(f"{where}.control_point_levels",
                          f"has {len(levels)} levels but shrink_factors has "
                          f"{len(params['shrink_factors'])}; there is one mesh refinement "
                          "factor per pyramid level (bigstream's meaning).",
                          "give them the same length.")
    params["control_point_levels"] = levels
    _check_choice(params, "engine", ENGINES, where)
    if params["engine"] == "sparse":
        why_not = sparse_unsupported(params)
        if why_not:
            raise ConfigError(f"{where}.engine", f"the sparse engine does not do {why_not}.",
                              "use engine: auto (falls back to SimpleITK) or engine: itk.")


def _check_initial(params, where):
    init = params["initial_condition"]
    if init is None or not isinstance(init, str) or init in INITIAL_CONDITIONS:
        return  # a matrix was checked with the step's origins (_check_every_step)
    raise ConfigError(f"{where}.initial_condition",
                      f"must be CENTER, PHASE, null or a 4x4 matrix, got {init!r}.")


# ransac/random numeric keys: (check, message); null is allowed where the default is null
_FEATURE_CHECKS = {
    "blob_radius": (lambda v: v > 0, "must be a positive radius in µm (e.g. a nucleus radius)"),
    "num_sigma_max": (lambda v: v >= 1 and v == int(v), "must be a whole number >= 1"),
    "cc_radius": (lambda v: v > 0, "must be a positive half-width in voxels"),
    "match_threshold": (lambda v: -1 <= v <= 1, "must be a correlation in [-1, 1], e.g. 0.7"),
    "max_spot_match_distance": (lambda v: v > 0, "must be a positive distance in µm, or null"),
    "point_matches_threshold": (lambda v: v >= 4 and v == int(v),
                                "must be a whole number of matches >= 4"),
    "fix_spots_count_threshold": (lambda v: v >= 4 and v == int(v),
                                  "must be a whole number of spots >= 4"),
    "mov_spots_count_threshold": (lambda v: v >= 4 and v == int(v),
                                  "must be a whole number of spots >= 4"),
    "align_threshold": (lambda v: v > 0, "must be a positive inlier distance in µm"),
    "diagonal_constraint": (lambda v: v > 0, "must be > 0 (0.25 allows diagonals 0.75 to 1.25)"),
    "nspots": (lambda v: v >= 12 and v == int(v), "must be a whole number of points >= 12"),
    "max_scale_change": (lambda v: v > 1, "must be > 1 (2.0 allows scales 0.5 to 2)"),
    "random_iterations": (lambda v: v >= 1 and v == int(v), "must be a positive whole number"),
    "nreturn": (lambda v: v >= 1 and v == int(v), "must be a positive whole number"),
    "max_translation": (lambda v: v >= 0, "must be a bound >= 0 in µm, or null for 25 % of the field"),
    "max_rotation": (lambda v: v >= 0, "must be a bound >= 0 in radians"),
    "max_scale": (lambda v: v >= 1, "must be >= 1 (1.1 allows scales 1/1.1 to 1.1)"),
    "max_shear": (lambda v: v >= 0, "must be >= 0"),
    "alignment_spacing": (lambda v: v > 0, "must be a positive µm value or null"),
}
_INTEGER_KEYS = ("num_sigma_max", "point_matches_threshold", "fix_spots_count_threshold",
                 "mov_spots_count_threshold", "nspots", "random_iterations", "nreturn")


def _check_feature(name, params, where):
    """Check the settings of a ransac/random step (one-line errors)."""
    for key, (ok, message) in _FEATURE_CHECKS.items():
        if key in params and params[key] is not None:
            params[key] = _checked_number(params[key], ok, message, f"{where}.{key}",
                                          per_axis=key == "max_translation",
                                          integer=key in _INTEGER_KEYS)
    if name == "ransac":
        _check_ransac(params, where)
    elif params["use_patch_mutual_information"] is not False:
        raise ConfigError(f"{where}.use_patch_mutual_information",
                          "patch mutual information is not implemented; the random step "
                          "scores candidates by -NCC.", "leave it false or remove it.")


def _checked_number(value, ok, message, where, *, per_axis=False, integer=False):
    """``value`` as float (int with ``integer``; three floats if ``per_axis`` and a list)."""
    three = per_axis and isinstance(value, (list, tuple))
    values = list(value) if three else [value]
    try:
        good = (len(values) == (3 if three else 1)
                and all(not isinstance(v, bool) and ok(float(v)) for v in values))
    except (TypeError, ValueError):
        good = False
    if not good:
        raise ConfigError(where, f"{value!r}: {message}{' (or three, z,y,x)' if per_axis else ''}.")
    if three:
        return [float(v) for v in values]
    return int(value) if integer else float(value)


def _check_ransac(params, where):
    """bigstream's ransac keys: blob sizes (vox) or blob_radius (µm), spots, detector kwargs."""
    sizes = params["blob_sizes"]
    if sizes is not None and params["blob_radius"] is not None:
        raise ConfigError(f"{where}.blob_sizes", "and blob_radius both give the blob size.",
                          "keep one: blob_sizes [min, max] in voxels (bigstream) or "
                          "blob_radius in µm.")
    if sizes is not None:
        params["blob_sizes"] = _blob_sizes(sizes, f"{where}.blob_sizes")
    elif params["blob_radius"] is None:
        params["blob_radius"] = BLOB_RADIUS_UM
    for key in ("fix_spots", "mov_spots"):
        if params[key] is not None:
            raise ConfigError(f"{where}.{key}", "spot coordinates cannot be given to a step "
                              "in a config (they would have to be per block).",
                              "remove it; spots are detected with blob_sizes.")
    for key in ("fix_spot_detection_kwargs", "mov_spot_detection_kwargs"):
        params[key] = _spot_detection_kwargs(params[key], f"{where}.{key}")
    if not isinstance(params["safeguard_exceptions"], bool):
        raise ConfigError(f"{where}.safeguard_exceptions", "must be true or false.")


def _blob_sizes(value, where):
    """bigstream's ``blob_sizes``: [min, max] radius in voxels, 0 < min <= max."""
    try:
        low, high = (float(v) for v in value)
        assert 0 < low <= high and not any(isinstance(v, bool) for v in value)
    except Exception:
        raise ConfigError(where, f"{value!r}: must be [min, max] blob radius in voxels at the "
                          "step's alignment_spacing, 0 < min <= max.", "e.g. [2, 6].") from None
    return [low, high]


def _spot_detection_kwargs(value, where):
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ConfigError(where, "must be a mapping.")
    for key, v in value.items():
        if key not in SPOT_DETECTION_KEYS:
            raise ConfigError(f"{where}.{key}", f"the spot detector does not take {key!r}.",
                              "use threshold (minimum scale-normalised LoG response); the "
                              "border is cc_radius, the scales blob_sizes/num_sigma_max.")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.{key}", f"{v!r}: must be a number.")
    return {k: float(v) for k, v in value.items()}


def _check_choice(params, key, choices, where, transform=lambda v: v):
    value = transform(params[key])
    if value not in choices:
        raise ConfigError(f"{where}.{key}", f"{params[key]!r} is not supported.",
                          f"use one of: {', '.join(choices)}.")
    params[key] = value


def _merged_args(given, valid, defaults, where):
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise ConfigError(where, "must be a mapping.")
    for key in given:
        if key not in valid:
            raise ConfigError(f"{where}.{key}", f"unknown key {key!r}.",
                              f"valid keys: {', '.join(sorted(valid)) or 'none'}.")
    return {**defaults, **given}


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _int_list(value, where):
    out = []
    for v in _as_list(value):
        if float(v) != int(float(v)) or int(float(v)) < 1:
            raise ConfigError(where, f"{v!r} is not a positive whole number.")
        out.append(int(float(v)))
    return out


# what the sparse B-spline engine (snakestream.register.bspline) covers
SPARSE_OPTIMIZER_KEYS = {"learningRate", "minStep", "numberOfIterations", "relaxationFactor",
                         "gradientMagnitudeTolerance"}
SPARSE_METRICS = ("C", "MS", "MMI")


def sparse_unsupported(params, static_kinds=()):
    """Why the sparse engine cannot run a normalised deform step, or None if it can.

    Parameters
    ----------
    params : dict
        Normalised deform step.
    static_kinds : sequence of str
        Kinds ('affine'/'bspline') of the transforms the step starts from.
    """
    extra = set(params["optimizer_args"]) - SPARSE_OPTIMIZER_KEYS
    checks = [
        (params["metric"] in SPARSE_METRICS, f"metric {params['metric']} (sparse: C, MS, MMI)"),
        (params["optimizer"] == "RSGD", f"optimizer {params['optimizer']} (sparse: RSGD)"),
        (not extra, "optimizer_args " + ", ".join(sorted(extra))),
        (params["interpolator"] == "1", f"interpolator {params['interpolator']} (sparse: 1)"),
        (list(params["shrink_factors"]) == [1], "shrink_factors other than [1]"),
        (list(params["control_point_levels"]) == [1], "control_point_levels other than [1]"),
        (all(k == "affine" for k in static_kinds), "a B-spline earlier in the step list"),
    ]
    return "; ".join(why for ok, why in checks if not ok) or None


def deform_engine(params, static_kinds=()):
    """('sparse' or 'itk', reason the sparse engine is not used or None) for a deform step."""
    why_not = sparse_unsupported(params, static_kinds)
    if params.get("engine", "auto") == "itk" or why_not:
        return "itk", why_not
    return "sparse", None


def uses_sparse_engine(params):
    """Whether a normalised deform step runs on the sparse engine (given affine starts)."""
    return deform_engine(params)[0] == "sparse"
