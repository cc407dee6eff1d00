"""Step dictionaries: bigstream's keys accepted verbatim, unknown keys named."""
import os

import pytest
import yaml

from conftest import ROOT, talk_steps
from snakestream.config import load, load_schema, validate
from snakestream.errors import ConfigError
from snakestream.register.steps import normalize_steps

SCHEMA = load_schema(os.path.join(ROOT, "config", "schema.yaml"))


@pytest.mark.parametrize("name", sorted(talk_steps()))
def test_talk_step_lists_are_accepted_verbatim(name):
    steps = normalize_steps(talk_steps()[name], name)
    assert [s[0] for s in steps] == [s[0] for s in talk_steps()[name]]
    for (_, given), (_, params) in zip(talk_steps()[name], steps):
        assert params["optimizer_args"]["numberOfIterations"] == \
            given["optimizer_args"]["numberOfIterations"]
        assert params["metric"] == given.get("metric", "MMI")


def test_bigstream_defaults_and_documented_differences():
    (_, affine), (_, deform) = normalize_steps(
        [["affine", {}], ["deform", {"control_point_spacing": 3.0}]], "s")
    assert affine["optimizer_args"] == {"learningRate": 0.25, "minStep": 0.0,
                                        "numberOfIterations": 100}
    assert affine["sampling"] == "NONE" and affine["shrink_factors"] == [1]
    assert deform["sampling"] == "RANDOM" and deform["sampling_percentage"] == 0.05
    assert deform["control_point_levels"] == [1]


@pytest.mark.parametrize("step, key", [
    (["affine", {"learning_rate": 0.1}], "learning_rate"),
    (["deform", {"control_point_spacing": 3.0, "optimizer_args": {"iterations": 5}}],
     "iterations"),
    (["rigid", {"metric_args": {"bins": 5}}], "bins"),
])
def test_unknown_keys_are_named(step, key):
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        normalize_steps([step], "blocks.steps")


@pytest.mark.parametrize("step, text", [
    (["deform", {}], "control_point_spacing"),
    (["deform", {"control_point_spacing": 3, "shrink_factors": [2, 1],
                 "smooth_sigmas": [1, 0]}], "control_point_levels"),
    (["affine", {"metric": "NCC"}], "not supported"),
    (["affine", {"shrink_factors": [2, 1]}], "smooth_sigmas"),
    (["warp", {}], "unknown step 'warp'"),
])
def test_bad_step_values_are_explained(step, text):
    with pytest.raises(ConfigError, match=text):
        normalize_steps([step], "blocks.steps")


def _config(**over):
    cfg = yaml.safe_load(open(os.path.join(ROOT, "config", "config.yaml")))
    cfg.update(over)
    return cfg


def test_template_config_is_valid():
    cfg = validate(_config(), SCHEMA)
    assert [s[0] for s in cfg["_block_steps"]] == ["affine", "deform"]


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="unknown key.*'blocksizes'"):
        validate(_config(blocksizes=[1, 2, 3]), SCHEMA)


def test_bad_overlap_is_located():
    cfg = _config()
    cfg["blocks"]["overlap"] = 1.5
    with pytest.raises(ConfigError, match="blocks.overlap"):
        validate(cfg, SCHEMA)


def test_deform_in_global_steps_is_refused():
    cfg = _config(global_steps=[["deform", {"control_point_spacing": 3.0}]])
    with pytest.raises(ConfigError, match="global_steps"):
        validate(cfg, SCHEMA)


def test_defaults_reach_nested_and_null_objects():
    """Only the schema holds defaults; a partial or null object gets all of its own."""
    cfg = _config(threads=None, exports=None, extra_volumes=[{"name": "red", "path": "r.h5"}])
    del cfg["output_chunks"]
    cfg["blocks"] = {"blocksize": [8, 8, 8], "steps": cfg["blocks"]["steps"], "overlap": 0.25}
    out = validate(cfg, SCHEMA)
    assert out["threads"] == {"global": 1, "gather": 1, "warp": 1}
    assert out["exports"] == {"itk": True, "itk_total_field": False, "itk_field_step": [2, 2, 2]}
    assert out["output_chunks"] == [64, 128, 128] and out["points"] == []
    assert out["extra_volumes"][0]["interpolation"] == "linear"
    assert {k: v for k, v in out["blocks"].items() if k != "steps"} == {
        "blocksize": [8, 8, 8], "overlap": 0.25, "foreground_fraction": 0.5,
        "moving_margin": None, "on_block_failure": "fallback"}
    assert cfg["threads"] is None and "foreground_fraction" not in cfg["blocks"]  # not edited


def test_a_config_without_blocks_has_no_block_stage():
    absent = _config()
    del absent["blocks"]
    for cfg in (absent, _config(blocks=None)):
        out = validate(cfg, SCHEMA)
        assert out["blocks"] is None and "_block_steps" not in out


def test_load_reads_validates_and_fills_a_config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_config(warp=None)))
    cfg = load(path)
    assert cfg["warp"] == {"order": 1} and cfg["threads"]["gather"] == 1
    assert [s[0] for s in cfg["_block_steps"]] == ["affine", "deform"]
    path.write_text(yaml.safe_dump(_config(blocksizes=[1, 2, 3])))
    with pytest.raises(ConfigError, match="unknown key.*'blocksizes'"):
        load(path)


def test_schema_violations_name_the_key_what_it_is_and_the_fix():
    """A oneOf value (moving.channel), a missing key and a bad value among several: each
    its own line naming the key and the fix, never jsonschema's own wording."""
    cfg = _config()
    cfg["moving"]["channel"] = -1
    with pytest.raises(ConfigError) as err:
        validate(cfg, SCHEMA)
    msg = str(err.value)
    assert msg.startswith("key moving.channel: -1 is below the minimum 0; channel: ")
    assert msg.endswith("Fix: set moving.channel to at least 0.")
    cfg = _config()
    del cfg["blocks"]["steps"]
    cfg["pyramid_levels"] = 0
    with pytest.raises(ConfigError) as err:
        validate(cfg, SCHEMA)
    msg = str(err.value)
    assert "2 problems" in msg and "Fix: add blocks.steps" in msg
    assert "key pyramid_levels: 0 is below the minimum 1" in msg
    assert "is not valid under any of the given schemas" not in msg and "\n" not in msg
