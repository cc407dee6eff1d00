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
"""

import copy

from snakestream.errors import ConfigError

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

COMMON = {
    "alignment_spacing": None,
    "shrink_factors": [1],
    "smooth_sigmas": [0.0],
    "optimizer": "RSGD",
    "optimizer_args": {},
    "metric": "MMI",
    "metric_args": {},
    "sampling": "NONE",
    "sampling_percentage": None,
    "interpolator": "1",
    "fix_mask": None,
    "mov_mask": None,
}
PER_STEP = {
    "rigid": {"initial_condition": None},
    "affine": {"initial_condition": None},
    "deform": {"control_point_spacing": None, "control_point_levels": [1],
               "sampling": "RANDOM", "sampling_percentage": 0.05, "engine": "auto"},
    "ransac": {"blob_radius": 2.0, "match_threshold": 0.7, "align_threshold": 2.0,
               "nspots": 5000, "alignment_spacing": None, "fix_mask": None,
               "mov_mask": None, "max_scale_change": 2.0},
    "random": {"random_iterations": 500, "max_translation": None, "max_rotation": None,
               "max_scale": None, "max_shear": None, "alignment_spacing": None,
               "fix_mask": None, "mov_mask": None},
}
INITIAL_CONDITIONS = ("CENTER", "PHASE")
ENGINES = ("auto", "sparse", "itk")


def defaults_for(name):
    """Full default dictionary of a step type."""
    if name in FEATURE_STEPS:
        return copy.deepcopy(PER_STEP[name])
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
    if name in REGISTRATION_STEPS:
        _check_registration(name, params, where)
    else:
        _check_feature(params, where)
    return name, params


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
    if init is None or (isinstance(init, str) and init in INITIAL_CONDITIONS):
        return
    try:
        import numpy as np
        matrix = np.asarray(init, dtype=float)
        assert matrix.shape == (4, 4)
    except Exception:
        raise ConfigError(f"{where}.initial_condition",
                          f"must be CENTER, PHASE, null or a 4x4 matrix, got {init!r}.") from None
    params["initial_condition"] = matrix.tolist()


# ransac/random keys: (check, message); null is allowed where the default is null
_FEATURE_CHECKS = {
    "blob_radius": (lambda v: v > 0, "must be a positive radius in µm (e.g. a nucleus radius)"),
    "match_threshold": (lambda v: -1 <= v <= 1, "must be a correlation in [-1, 1], e.g. 0.7"),
    "align_threshold": (lambda v: v > 0, "must be a positive inlier distance in µm"),
    "nspots": (lambda v: v >= 12 and v == int(v), "must be a whole number of points >= 12"),
    "max_scale_change": (lambda v: v > 1, "must be > 1 (2.0 allows scales 0.5 to 2)"),
    "random_iterations": (lambda v: v >= 1 and v == int(v), "must be a positive whole number"),
    "max_translation": (lambda v: v >= 0, "must be a bound >= 0 in µm, or null for 25 % of the field"),
    "max_rotation": (lambda v: v >= 0, "must be a bound >= 0 in radians"),
    "max_scale": (lambda v: v >= 0, "must be >= 0 (0.1 allows scales 1/1.1 to 1.1)"),
    "max_shear": (lambda v: v >= 0, "must be >= 0"),
    "alignment_spacing": (lambda v: v > 0, "must be a positive µm value or null"),
}


def _check_feature(params, where):
    """Check the numeric settings of a ransac/random step (one-line errors)."""
    for key, (ok, message) in _FEATURE_CHECKS.items():
        value = params.get(key)
        if key not in params or value is None:
            continue
        per_axis = key == "max_translation" and isinstance(value, (list, tuple))
        values = list(value) if per_axis else [value]
        try:
            good = (len(values) == (3 if per_axis else 1)
                    and all(not isinstance(v, bool) and ok(float(v)) for v in values))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"{where}.{key}", f"{value!r}: {message}"
                              f"{' (or three, z,y,x)' if key == 'max_translation' else ''}.")
        if per_axis:
            params[key] = [float(v) for v in values]
        else:
            params[key] = int(value) if key in ("nspots", "random_iterations") else float(value)


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
