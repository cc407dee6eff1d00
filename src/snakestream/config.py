"""Load and check a run configuration: one clear line per bad key.

The defaults live in config/schema.yaml only; :func:`validate` fills them in,
through nested objects and arrays of objects. After it, every key the schema
knows can be indexed directly (``cfg["blocks"]["foreground_fraction"]``,
``cfg["threads"]["gather"]``), and ``cfg["blocks"]`` is either None (no block
stage) or a complete dict.
"""

import copy
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


def _message(error):
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        valid = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown key(s) {', '.join(map(repr, extra))}. Valid keys here: {valid}."
    if error.validator == "required":
        return error.message.replace("is a required property", "is required") + "."
    return f"{error.message}."


def check_schema(config, schema):
    """Validate ``config`` against a JSON schema; ConfigError lists every problem, one per line."""
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_location(e)}: {_message(e)}" for e in errors]
        raise ConfigError("config", "\n".join(lines) if len(lines) > 1 else lines[0])


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
