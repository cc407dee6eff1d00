"""Load and check a run configuration: one clear line per bad key."""

import jsonschema
import yaml

from snakestream.errors import ConfigError
from snakestream.register.steps import REGISTRATION_STEPS, FEATURE_STEPS, normalize_steps

DEFAULT_CHUNKS = [64, 128, 128]


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


def fill_defaults(config, schema):
    """Fill schema defaults of nested objects that are present (in place)."""
    for key, sub in schema.get("properties", {}).items():
        if "default" in sub and key not in config:
            config[key] = sub["default"]
        if isinstance(config.get(key), dict):
            target = sub
            if "$ref" in sub:
                target = schema["definitions"][sub["$ref"].split("/")[-1]]
            fill_defaults(config[key], target)
    return config


def load_schema(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


def validate(config, schema):
    """Check a config dict and return it with defaults and normalised steps.

    Adds ``_global_steps`` and ``_block_steps`` (normalised lists) so rules can
    pass exactly the settings each stage uses.
    """
    config = dict(config)
    check_schema(config, schema)
    fill_defaults(config, schema)
    config.setdefault("threads", {})
    for key, value in {"global": 1, "gather": 1, "warp": 1}.items():
        config["threads"].setdefault(key, value)
    config.setdefault("output_chunks", DEFAULT_CHUNKS)
    config.setdefault("warp", {}).setdefault("order", 1)
    config.setdefault("exports", {}).setdefault("itk", True)
    config["exports"].setdefault("itk_total_field", False)
    for item in config.get("extra_volumes") or []:
        item.setdefault("interpolation", "linear")
    for item in config.get("points") or []:
        item.setdefault("units", "um")
        item.setdefault("direction", "fixed_to_moving")
    config["_global_steps"] = normalize_steps(
        config["global_steps"], "global_steps", FEATURE_STEPS + ("rigid", "affine"))
    blocks = config.get("blocks")
    if blocks:
        config["_block_steps"] = normalize_steps(
            blocks["steps"], "blocks.steps", FEATURE_STEPS + REGISTRATION_STEPS)
    return config
