"""Load and check a run configuration: one clear line per bad key.

The defaults live in config/schema.yaml only; :func:`validate` fills them in,
through nested objects and arrays of objects. After it, every key the schema
knows can be indexed directly (``cfg["blocks"]["foreground_fraction"]``,
``cfg["threads"]["gather"]``), and ``cfg["blocks"]`` is either None (no block
stage) or a complete dict.
"""

import copy
import json
import os
import site
import sys

import jsonschema
import yaml

from snakestream.errors import ConfigError
from snakestream.register.steps import REGISTRATION_STEPS, FEATURE_STEPS, normalize_steps

# Where the workflow files (Snakefile, rules/, scripts/, config/schema.yaml, profiles/)
# are: the source checkout of an editable install, else the copy a wheel installs as
# data files under <prefix>/share/snakestream (pyproject.toml's data-files).
_CHECKOUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          os.pardir, os.pardir))
_INSTALLED = [os.path.join(prefix, "share", "snakestream")
              for prefix in (sys.prefix, site.USER_BASE or "")]


def workflow_root():
    """The folder holding the installed workflow: Snakefile, rules/, scripts/,
    config/schema.yaml and profiles/ (the checkout of an editable install)."""
    for folder in (_CHECKOUT, *_INSTALLED):
        if os.path.isfile(os.path.join(folder, "Snakefile")):
            return folder
    raise ConfigError("snakestream", f"the workflow files (Snakefile, rules/) are neither "
                      f"in {_CHECKOUT} nor in {' or '.join(_INSTALLED)}.",
                      "reinstall: pip install -e /path/to/snakestream (or pip install "
                      "/path/to/snakestream).")


def _location(error):
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "config"


_TYPE_NAMES = {"number": "a number", "integer": "a whole number", "string": "a string",
               "boolean": "true or false", "array": "a list", "object": "a mapping of keys",
               "null": "null"}


def _types(value):
    """A schema ``type`` (one name or a list) in words: 'a number or null'."""
    names = value if isinstance(value, list) else [value]
    return " or ".join(_TYPE_NAMES.get(n, n) for n in names)


def _innermost(error):
    """The most telling sub-error of a ``oneOf``/``anyOf`` failure (not a bare type
    mismatch against ``null`` when the value has another type)."""
    while error.context:
        deeper = [e for e in error.context if e.validator != "type"] or list(error.context)
        error = jsonschema.exceptions.best_match(deeper)
    return error


def _bound(error):
    """(problem, fix) of a min/max violation, e.g. ('1.5 is above the maximum 1', ...)."""
    v, limit, key = error.instance, error.validator_value, _location(error)
    words = {"minimum": ("below the minimum", f"at least {limit}"),
             "exclusiveMinimum": ("not above the minimum", f"a value above {limit}"),
             "maximum": ("above the maximum", f"at most {limit}"),
             "exclusiveMaximum": ("not below the maximum", f"a value below {limit}")}
    what, fix = words[error.validator]
    if error.validator.startswith("exclusive") and v != limit:
        what = "below the minimum" if error.validator == "exclusiveMinimum" else "above the maximum"
    return f"{v!r} is {what} {limit}", f"set {key} to {fix}"


def _problem_and_fix(error):
    """One violation as (problem, fix): what is wrong with the value, what to set."""
    key, value = _location(error), error.instance
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        valid = ", ".join(sorted(error.schema.get("properties", {})))
        return (f"unknown key(s) {', '.join(map(repr, extra))}.",
                f"remove or rename it; valid keys here: {valid}.")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        full = f"{key}.{missing}" if error.absolute_path else missing
        return f"{missing!r} is required.", f"add {full} (see config/config.yaml)."
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _bound(error)
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return f"{value!r} is not one of {choices}", f"set {key} to one of {choices}"
    if error.validator == "type":
        return (f"{value!r} is not {_types(error.validator_value)}",
                f"give {key} as {_types(error.validator_value)}")
    if error.validator in ("minItems", "maxItems"):
        n = error.validator_value
        more = "at least" if error.validator == "minItems" else "at most"
        return (f"{value!r} has {len(value)} item(s), {more} {n} needed",
                f"give {key} {more} {n} values")
    if error.validator == "pattern":
        return (f"{value!r} does not match {error.validator_value}",
                f"use only the characters {error.validator_value} allows")
    if error.validator == "minLength":
        return f"{value!r} is too short", f"give {key} a non-empty value"
    return f"{error.message}.", None


def _line(error, root):
    """A violation as (where, problem, fix): 'key blocks.overlap', '1.5 is above ...'."""
    inner = _innermost(error)
    problem, fix = _problem_and_fix(inner)
    # a bad value is told what its key means and defaults to; a bad set of keys is not
    about_value = error.absolute_path and inner.validator not in ("additionalProperties",
                                                                   "required")
    key_schema = _sub_schema(root, error.absolute_path, root) if about_value else {}
    description = (key_schema.get("description") or "").strip()
    if description:
        problem = f"{problem.rstrip('.')}; {_location(error).split('.')[-1]}: {description}"
    if fix and "default" in key_schema:
        fix = (f"{fix.rstrip('.')} (or leave it out for the default, "
               f"{json.dumps(key_schema['default'])})")
    end = lambda text: text if text is None or text.endswith(".") else text + "."  # noqa: E731
    where = f"key {_location(error)}" if error.absolute_path else "config"
    return where, end(problem), end(fix)


def check_schema(config, schema):
    """Validate ``config`` against a JSON schema.

    A violation is one line ``key <dotted key>: <the value> is <what is wrong>;
    <the key's description>. Fix: <what to set>``; several are numbered on that line.
    """
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines = [_line(e, schema) for e in errors]
    if len(lines) == 1:
        raise ConfigError(*lines[0])
    text = " ".join(f"({i}) {ConfigError(*line)}" for i, line in enumerate(lines, 1))
    raise ConfigError("config", f"{len(lines)} problems: {text}")


def _resolve(sub, schema):
    """A property's schema, following a local ``$ref`` into ``schema``'s definitions."""
    if "$ref" in sub:
        return schema["definitions"][sub["$ref"].split("/")[-1]]
    return sub


def _fills_itself(sub):
    """Whether a missing or null object is its defaults: an object that requires no key."""
    types = sub.get("type")
    types = types if isinstance(types, list) else [types]
    return "object" in types and "properties" in sub and not sub.get("required")


def fill_defaults(config, schema, root=None):
    """Fill the schema's defaults into ``config`` (in place) and return it.

    A missing key gets its ``default``. A missing or null object whose schema
    requires no key becomes its defaults (``threads: null`` gets every
    ``threads`` default); one that requires keys (``blocks``) keeps its default
    (None) or null. Defaults reach objects nested at any depth and the objects
    in arrays (``extra_volumes``, ``points``).

    Parameters
    ----------
    config : dict
        A config that passed :func:`check_schema`.
    schema : dict
        The (sub)schema ``config`` follows.
    root : dict, optional
        The whole schema, for ``$ref``; ``schema`` itself by default.
    """
    root = schema if root is None else root
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if config.get(key) is None and _fills_itself(sub):
            config[key] = {}
        value = config.get(key)
        if isinstance(value, dict):
            fill_defaults(value, sub, root)
        elif isinstance(value, list) and isinstance(sub.get("items"), dict):
            items = _resolve(sub["items"], root)
            for item in value:
                if isinstance(item, dict):
                    fill_defaults(item, items, root)
    return config


def bigstream_block_keys(blocks):
    """Map bigstream's block-pipeline keys in ``blocks`` (in place) to snakestream's.

    ``foreground_percentage`` becomes ``foreground_fraction`` (same meaning, a
    fraction); ``rebalance_for_missing_neighbors: true`` and an empty
    ``static_transform_list`` are what the block stage does and are dropped; other
    values get one line naming the key and what to use instead.
    """
    if "foreground_percentage" in blocks:
        value = blocks.pop("foreground_percentage")
        if blocks.setdefault("foreground_fraction", value) != value:
            raise ConfigError("blocks.foreground_percentage",
                              "and blocks.foreground_fraction are the same setting with "
                              "different values.", "keep one of them.")
    if blocks.pop("rebalance_for_missing_neighbors", True) is not True:
        raise ConfigError("blocks.rebalance_for_missing_neighbors",
                          "false is not supported: the gather always divides the blended "
                          "fields by the weights of the blocks present.",
                          "remove the key (true is the behaviour).")
    if blocks.pop("static_transform_list", None):
        raise ConfigError("blocks.static_transform_list",
                          "the block stage always starts from the global affine.",
                          "remove it; set the starting transform with global_steps.")
    return blocks


AUTO_MASK = "auto"  # a volume entry's `mask: auto`


def auto_mask_path(output, role):
    """Where rule auto_mask writes the ``mask: auto`` of volume `role` ("fixed", "moving")."""
    return f"{output.rstrip('/')}/masks/{role}.ome.zarr"


def auto_masks(config):
    """Turn each ``mask: auto`` of ``fixed``/``moving`` (in place) into the mask entry
    of the file rule auto_mask writes.

    The entry is ``{path, dataset: "0", auto: <the auto_mask settings>}``, so every
    consumer opens it as a given mask, through
    :func:`snakestream.grid.inputs.open_mask`; ``auto`` marks it as made by the run
    (a mask file literally named ``auto`` must be given as ``./auto``).
    """
    for role in ("fixed", "moving"):
        if config[role].get("mask") == AUTO_MASK:
            config[role]["mask"] = {"path": auto_mask_path(config["output"], role),
                                    "dataset": "0", "auto": dict(config["auto_mask"])}
    return config


def _sub_schema(schema, path, root):
    """The schema of the value at ``path`` (keys and list indices), following $ref; {} if unknown."""
    sub = schema
    for part in path:
        sub = _resolve(sub, root)
        if isinstance(part, int):
            sub = sub.get("items", {})
        else:
            sub = sub.get("properties", {}).get(part, {})
    return _resolve(sub, root)


def _allows(sub, kind, root):
    """Whether a schema admits JSON type ``kind`` ('string', 'object'); unknown: True."""
    branches = sub.get("oneOf") or sub.get("anyOf")
    if branches:
        return any(_allows(_resolve(b, root), kind, root) for b in branches)
    if "type" not in sub:
        return kind == "string" or not sub
    types = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
    return kind in types


def _string_leaves(value, path=()):
    """(path, text) of every string inside nested dicts and lists."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_leaves(v, path + (i,))


def _set(config, path, value):
    for part in path[:-1]:
        config = config[part]
    config[path[-1]] = value


def merge_mappings(base, update):
    """``base`` (not modified) with ``update``'s keys, nested mappings merged key by key."""
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_yaml(text, where):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(where, f"{text!r} is not valid YAML ({problem}).",
                          f"quote the whole value, e.g. --config '{where.split()[-1]}={{overlap: "
                          "0.25}' (a mapping in braces, keys and values separated by ': ')."
                          ) from None


def read_config_files(paths):
    """The settings of YAML config files, later files' keys merged over earlier ones'."""
    out = {}
    for path in paths or ():
        with open(path) as fh:
            out = merge_mappings(out, yaml.safe_load(fh) or {})
    return out


def command_line_config(config, overrides, file_config, schema=None):
    """The config with ``snakemake --config`` values read as YAML, as the config file's are.

    Snakemake reads ``--config 'blocks={overlap: 0.25}'`` as strings
    (``{'overlap': '0.25'}``) merged into the file's ``blocks``, or keeps the whole
    value as a string when it is not a flow mapping it can read. Here a string given
    for a key whose schema wants a mapping is parsed with ``yaml.safe_load`` and
    merged into the config file's mapping (only the keys given change), and every
    other string given on the command line where the schema wants no string (a
    number, a list, true/false) is parsed likewise.

    Parameters
    ----------
    config : dict
        Snakemake's ``config`` (file and command line merged; not modified).
    overrides : dict
        The ``--config`` values (``workflow.config_settings.overwrite_config``).
    file_config : dict
        The config files' settings alone, merged in order.
    schema : dict, optional
        The schema; config/schema.yaml by default.

    Returns
    -------
    dict
    """
    schema = load_schema() if schema is None else schema
    config, merged = copy.deepcopy(config), set()
    for key, value in (overrides or {}).items():
        if isinstance(value, str) and _allows(_sub_schema(schema, (key,), schema), "object",
                                              schema):
            parsed = _parse_yaml(value, f"--config {key}")
            if isinstance(parsed, dict):
                config[key] = merge_mappings((file_config or {}).get(key), parsed)
                merged.add(key)
    for path, text in _string_leaves(overrides or {}):
        sub = _sub_schema(schema, path, schema)
        if path[0] not in merged and sub and not _allows(sub, "string", schema):
            _set(config, path, _parse_yaml(text, "--config " + ".".join(map(str, path))))
    return config


def load_schema(path=None):
    """The config schema (the installed workflow's config/schema.yaml by default) as a dict."""
    path = os.path.join(workflow_root(), "config", "schema.yaml") if path is None else path
    with open(path) as fh:
        return yaml.safe_load(fh)


def validate(config, schema=None):
    """Check a config dict and return a copy with defaults and normalised steps.

    Adds ``_global_steps`` and ``_block_steps`` (normalised lists; the latter
    only with blocks) so rules can pass exactly the settings each stage uses, and
    resolves ``mask: auto`` to the file the run writes (:func:`auto_masks`).

    Parameters
    ----------
    config : dict
        The run configuration as read from YAML (not modified).
    schema : dict, optional
        The schema (:func:`load_schema`); config/schema.yaml by default.

    Returns
    -------
    dict
        The validated config, every schema default filled in.
    """
    schema = load_schema() if schema is None else schema
    config = copy.deepcopy(config)
    check_schema(config, schema)
    if config.get("blocks") is not None:
        bigstream_block_keys(config["blocks"])
    fill_defaults(config, schema)
    auto_masks(config)
    config["_global_steps"] = normalize_steps(
        config["global_steps"], "global_steps", FEATURE_STEPS + ("rigid", "affine"))
    if config["blocks"] is not None:
        config["_block_steps"] = normalize_steps(
            config["blocks"]["steps"], "blocks.steps", FEATURE_STEPS + REGISTRATION_STEPS)
    check_labels(config)
    check_output_zarr(config)
    return config


def check_output_zarr(config):
    """``output_zarr.shard_chunks`` needs Zarr v3 and must divide ``output_chunks``."""
    inner, shard = config["output_zarr"]["shard_chunks"], config["output_chunks"]
    if inner is None:
        return
    if config["output_zarr"]["format"] != 3:
        raise ConfigError("output_zarr.shard_chunks", "sharding needs Zarr v3; set "
                          "output_zarr.format: 3 (or shard_chunks: null).")
    if any(s % i for s, i in zip(shard, inner)):
        raise ConfigError("output_zarr.shard_chunks", f"{inner} does not divide the shard "
                          f"shape output_chunks {shard} on every axis; choose shard_chunks "
                          f"whose z, y, x divide {shard}.")


def check_labels(config):
    """``labels.moving`` must name an ``extra_volumes`` entry warped with nearest neighbours."""
    labels = config.get("labels")
    if labels is None:
        return
    extras = {v["name"]: v for v in config["extra_volumes"]}
    name = labels["moving"]
    if name not in extras:
        raise ConfigError("labels.moving", f"{name!r} is not an extra_volumes name "
                          f"(have: {', '.join(sorted(extras)) or 'none'}); add the moving "
                          "label image to extra_volumes with interpolation: nearest and "
                          "give its name here.")
    if extras[name]["interpolation"] != "nearest":
        raise ConfigError("labels.moving", f"extra volume {name!r} is warped with "
                          f"{extras[name]['interpolation']} interpolation, which mixes "
                          f"labels; set interpolation: nearest on it.")


def load(path, schema=None):
    """Read a YAML config file and :func:`validate` it: what scripts outside Snakemake use.

    Parameters
    ----------
    path : str or path-like
        The YAML file given to ``snakemake --configfile``.
    schema : dict, optional
        The schema; config/schema.yaml by default.

    Returns
    -------
    dict
        The validated config with every default filled in.
    """
    with open(path) as fh:
        config = yaml.safe_load(fh)
    if not isinstance(config, dict):
        raise ConfigError("config", f"{path} holds no mapping of settings.",
                          "see config/config.yaml for a template.")
    return validate(config, schema)
