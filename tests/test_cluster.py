"""The LSF profile end to end, against stand-in LSF commands (there is no open-source LSF).

tests/fake_schedulers/ puts ``bsub``/``bjobs``/``bkill``/``bhist`` (and the few
commands the LSF executor plugin asks at start-up) on PATH. They record every call,
answer in LSF's output formats and run each job locally in the background. The demo
pair runs through ``--profile profiles/lsf`` exactly as a user types it (from the
repository root), and the recorded submissions must show: one core per block job,
the memory and runtime derived from the config, block jobs batched GROUP at a time,
batch members run one after another, and a displacement field bit-identical to a
local run. The SLURM profile runs on a real SLURM instead: tests/test_slurm.py.
"""

import glob
import json
import math
import os
import shlex
import sys

import numpy as np
import pytest
import yaml

from conftest import CLUSTER_SHAPE as SHAPE, ROOT, cluster_config, run_snakemake, write_config, zarr_arrays
from snakestream.config import load
from snakestream.fields.blockfile import load_block
from snakestream.grid.blocks import read_table
from snakestream.smk.cluster_checks import bsub_project_error, guess_lsf_project
from snakestream.smk.resources import block_mem_mb, block_runtime_min

FAKE_BIN = os.path.join(ROOT, "tests", "fake_schedulers")
sys.path.insert(0, FAKE_BIN)
from fakesched import parse_bsub  # noqa: E402

GROUP = 3  # blocks per batch in these runs (the profiles' default is 20)
SITE = {
    "lsf": ["lsf_project=snakestream_test", "lsf_queue=short", "lsf_extra='-G testgroup'"],
}
# Test-only speed-up: poll every second (the profiles keep Snakemake's defaults).
FAST = {
    "lsf": ["--seconds-between-status-checks", "1"],
}


def _env(state=None):
    env = dict(os.environ, PATH=os.pathsep.join([FAKE_BIN, os.path.dirname(sys.executable),
                                                 os.environ.get("PATH", "")]),
               FAKESCHED_SLOTS="2")
    if state:
        env["FAKESCHED_DIR"] = str(state)
    return env


def _snakemake(*args, env):
    """``snakemake ARGS`` run from the repository root, as the README tells users."""
    return run_snakemake(*args, cwd=ROOT, env=env, timeout=600)


def _check(proc):
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def demo(demo_data):
    """Demo data, the validated config and a local reference run."""
    root = demo_data("cluster", SHAPE, seed=5)
    cfg_path = write_config(root / "local.yaml", cluster_config(root / "data", root / "local"))
    _check(_snakemake("--profile", "profiles/local", "--cores", "2", "--configfile", cfg_path,
                      "--directory", str(root / "work_local"), env=_env()))
    cfg = load(cfg_path)
    table = read_table(root / "local" / "blocks" / "table.tsv")
    assert table["aligned"].astype(bool).sum() >= 3, "too few aligned blocks to compare runs"
    # block jobs: the aligned blocks (the others are decided at parse time, not jobs)
    return {"root": root, "cfg": cfg, "n_blocks": int(table["aligned"].astype(bool).sum()),
            "n_gather": len(glob.glob(str(root / "local" / "gather" / "slab_*.json"))),
            "n_warp": len(glob.glob(str(root / "local" / "warp" / "slab_*.json")))}


def _calls(state, tool):
    with open(os.path.join(state, "calls.jsonl")) as fh:
        return [c for c in map(json.loads, fh) if c["tool"] == tool]


def _values(tokens, flag):
    """Arguments after ``flag`` up to the next option."""
    if flag not in tokens:
        return []
    out = []
    for tok in tokens[tokens.index(flag) + 1:]:
        if tok.startswith("--"):
            break
        out.append(tok)
    return out


def _job(command):
    """(rules, target jobs, --cores, --jobs) of a spawned Snakemake command line."""
    tokens = shlex.split(command)
    return (set(_values(tokens, "--allowed-rules")), _values(tokens, "--target-jobs"),
            _values(tokens, "--cores"), _values(tokens, "--jobs"))


def _run_profile(demo, scheduler):
    """Run the demo through profiles/SCHEDULER; (stand-in scheduler's state folder, output)."""
    root = demo["root"]
    state = root / f"state_{scheduler}"
    cfg_path = write_config(root / f"{scheduler}.yaml",
                            cluster_config(root / "data", root / scheduler))
    proc = _snakemake("--profile", f"profiles/{scheduler}", "--configfile", cfg_path,
                      "--directory", str(root / f"work_{scheduler}"),
                      "--default-resources", *SITE[scheduler],
                      "--group-components", f"blocks={GROUP}", *FAST[scheduler],
                      env=_env(state))
    _check(proc)
    return state, root / scheduler


def _assert_same_result(demo, out):
    """Bit-identical to the local run, whose blocks ran in the warm worker's children;
    cluster blocks run in their own processes."""
    for where, process in ((out, "own"), (demo["root"] / "local", "warm worker")):
        files = glob.glob(str(where / "blocks" / "z*" / "y*" / "*.npz"))
        assert files and {load_block(f)[1]["process"] for f in files} == {process}
    for name in ("deform.zarr", "aligned.zarr"):
        ours, local = zarr_arrays(out / name), zarr_arrays(demo["root"] / "local" / name)
        assert ours.keys() == local.keys() and ours
        for key in ours:
            assert np.array_equal(ours[key], local[key]), f"{name}/{key} differs from the local run"


def _assert_members_one_at_a_time(out, batches):
    """Within a batch, block jobs ran one after another.

    A block job's span is [end - s, end]: ``s`` from its Snakemake benchmark, ``end``
    the last write to its log (Snakemake touches outputs and benchmarks when a batch
    ends, but not logs).
    """
    for targets in batches:
        spans = []
        for target in targets:
            wc = dict(kv.split("=") for kv in target.split(":", 1)[1].split(","))
            rel = os.path.join(f"z{wc['bz']}", f"y{wc['by']}", f"z{wc['bz']}_y{wc['by']}_x{wc['bx']}")
            with open(out / "benchmarks" / "blocks" / f"{rel}.tsv") as fh:
                seconds = float(fh.read().splitlines()[1].split("\t")[0])
            end = os.path.getmtime(out / "logs" / "blocks" / f"{rel}.log")
            spans.append((end - seconds, end))
        spans.sort()
        # Slack for the time between a job's last log write and the end of its benchmark
        # (grows on a loaded machine); members run side by side would overlap by most of
        # the shorter one's duration, far more than this.
        slack = max(0.25, 0.3 * min(b - a for a, b in spans))
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end - slack, f"batch members overlapped: {spans}"


def _assert_batches(demo, batches):
    """Every block exactly once, in ceil(blocks / GROUP) submissions."""
    members = [t for targets in batches for t in targets]
    assert len(members) == len(set(members)) == demo["n_blocks"]
    assert len(batches) == math.ceil(demo["n_blocks"] / GROUP)
    assert all(len(targets) <= GROUP for targets in batches)


def _assert_other_jobs(demo, others):
    """Global, gather and warp are cluster jobs of their own (one per z slab)."""
    expected = {"global_align": 1, "gather_slab": demo["n_gather"], "warp_slab": demo["n_warp"]}
    assert demo["n_gather"] >= 2 and demo["n_warp"] >= 2
    assert {rule: others.get(rule) for rule in expected} == expected


def _sorted_submissions(demo, submitted):
    """(block batches, {rule: submissions}) of :func:`_submitted`'s submissions,
    checked: every block once in full batches; global, gather and warp on their own."""
    batches, others = [], {}
    for _, rules, targets, _, _ in submitted:
        if rules == {"align_block"}:
            batches.append(targets)
        else:
            (rule,) = rules
            others[rule] = others.get(rule, 0) + 1
    _assert_batches(demo, batches)
    _assert_other_jobs(demo, others)
    return batches, others


def _block_resources(demo):
    """(MB, minutes) one block job asks for under the demo's config."""
    return block_mem_mb(demo["cfg"]), block_runtime_min(demo["cfg"])


def _submitted(demo, scheduler, tool, parse):
    """Run the demo through profiles/SCHEDULER: (state folder, output folder, one
    (options, rules, targets, --cores, --jobs) per ``tool`` call), ``parse(argv)``
    giving a call's (options, spawned Snakemake command)."""
    state, out = _run_profile(demo, scheduler)
    calls = [parse(call["argv"]) for call in _calls(state, tool)]
    return state, out, [(opts, *_job(command)) for opts, command in calls]


def test_lsf_profile_end_to_end(demo):
    state, out, submitted = _submitted(demo, "lsf", "bsub", parse_bsub)
    mem, minutes = _block_resources(demo)

    for opts, rules, targets, cores, _ in submitted:
        assert opts["-n"] == ["1"], "every LSF job asks for one slot"
        assert cores == ["1"], "the spawned Snakemake runs on one core"
        assert opts["-q"] == ["short"] and opts["-P"] == ["snakestream_test"]
        assert opts["-G"] == ["testgroup"], "lsf_extra reaches bsub"
        assert opts["-o"][0].startswith(str(state.parent / "work_lsf"))
        rusage = [r for r in opts["-R"] if r.startswith("rusage[mem=")]
        requested_mb = float(rusage[0][len("rusage[mem="):-1])
        if rules == {"align_block"}:
            assert requested_mb == mem, "a batch asks for one block's memory"
            assert int(opts["-W"][0]) == minutes * len(targets), "runtime = sum over the batch"
    batches, _ = _sorted_submissions(demo, submitted)
    assert _calls(state, "bjobs"), "job states were polled with bjobs"
    _assert_members_one_at_a_time(out, batches)
    _assert_same_result(demo, out)


def test_short_profile_name_resolves_through_the_user_config_folder(demo, tmp_path):
    """``--profile lsf`` finds a profile only in ./lsf or Snakemake's config folders:
    linking the repository's profiles there (README) makes the short name work."""
    cfg_path = write_config(tmp_path / "cfg.yaml", cluster_config(demo["root"] / "data", tmp_path / "out"))
    env = dict(_env(), XDG_CONFIG_HOME=str(tmp_path / "xdg"), XDG_CONFIG_DIRS=str(tmp_path / "etc"))
    args = ("--profile", "lsf", "--configfile", cfg_path, "--directory", str(tmp_path / "w"), "-n",
            "--quiet", "host")  # the job descriptions name the batch groups
    missing = _snakemake(*args, env=env)
    assert missing.returncode != 0 and "profile" in missing.stderr
    os.makedirs(tmp_path / "xdg" / "snakemake")
    os.symlink(os.path.join(ROOT, "profiles", "lsf"), tmp_path / "xdg" / "snakemake" / "lsf")
    found = _snakemake(*args, env=env)
    _check(found)
    assert "Using profile lsf" in found.stdout + found.stderr
    assert "Group job blocks" in found.stdout + found.stderr, "the profile's batches are used"


def test_profiles_keep_site_settings_out_of_code():
    """Queue/partition/account only in the profiles; the block batch size is one setting."""
    for name in ("lsf", "slurm", "local"):
        with open(os.path.join(ROOT, "profiles", name, "config.yaml")) as fh:
            profile = yaml.safe_load(fh)
        assert profile["scheduler"] == "greedy" and profile["rerun-incomplete"] is True
        if name != "local":
            assert profile["executor"] == name and profile["cores"] == 1
            assert profile["groups"] == {"align_block": "blocks"}
            assert 10 <= profile["group-components"]["blocks"] <= 50
            assert profile["retries"] >= 1 and profile["latency-wait"] >= 30
    code = "".join(open(p).read() for p in glob.glob(os.path.join(ROOT, "rules", "*.smk")))
    for key in ("lsf_queue", "lsf_project", "slurm_partition", "slurm_account"):
        assert key not in code


def _talk_config():
    """config/config.yaml: the bigstream talk's settings, 24x48x48 blocks."""
    return load(ROOT / "config" / "config.yaml")


def _with_block_steps(cfg, change):
    """``cfg`` with each block step's parameters replaced by ``change(name, params)``."""
    return {**cfg, "_block_steps": [[name, change(name, p)] for name, p in cfg["_block_steps"]]}


def _scaled_iterations(cfg, factor):
    return _with_block_steps(cfg, lambda _, p: {**p, "optimizer_args": {
        **p["optimizer_args"], "numberOfIterations": factor * p["optimizer_args"]["numberOfIterations"]}})


def test_block_resources_follow_blocksize_steps_and_attempt():
    cfg = _talk_config()
    # measured for this block size and these steps: ~60-100 s, ~280 MB peak (resources.py)
    assert 400 < block_mem_mb(cfg) < 1000
    assert 3 <= block_runtime_min(cfg) <= 30
    bigger = {**cfg, "blocks": {**cfg["blocks"], "blocksize": [48, 96, 96]}}
    assert block_mem_mb(bigger) > block_mem_mb(cfg)
    assert block_runtime_min(bigger) > block_runtime_min(cfg)
    assert block_runtime_min(_scaled_iterations(cfg, 4)) > block_runtime_min(cfg)
    for attempt in (2, 3):
        assert block_mem_mb(cfg, attempt=attempt) == attempt * block_mem_mb(cfg)
        assert block_runtime_min(cfg, attempt=attempt) == attempt * block_runtime_min(cfg)


def _with_deform(cfg, **change):
    return _with_block_steps(cfg, lambda name, p: {**p, **change} if name == "deform" else p)


def test_deform_runtime_scales_with_the_mesh_only_on_simpleitk():
    cfg = _talk_config()
    spacing = [0.4, 0.1625, 0.1625]
    assert cfg["_block_steps"][-1][1]["engine"] == "auto"      # the talk's deform: sparse
    fine = _with_deform(cfg, control_point_spacing=1.5)
    assert block_runtime_min(fine, spacing=spacing) == block_runtime_min(cfg, spacing=spacing)
    itk, itk_fine = _with_deform(cfg, engine="itk"), _with_deform(fine, engine="itk")
    # SimpleITK pays per sample x parameter: ~2x the parameters, ~2x the deform time
    assert block_runtime_min(itk, spacing=spacing) > block_runtime_min(cfg, spacing=spacing)
    assert block_runtime_min(itk_fine, spacing=spacing) > 1.5 * block_runtime_min(itk, spacing=spacing)


BHIST_LONG = """\
Job <1040>, Job Name <Snakemake_x>, User <ada>, Project <lab_a>, Command <python -m snak
                     emake ...>
Tue Dec 01 10:00:00: Submitted from host <login1>, to Queue <short>, CWD <$HOME>;

Summary of time in seconds spent in various states:
  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL
  0        0        1        0        0        0        1
------------------------------------------------------------------------------
Job <1041>, Job Name <x>, User <ada>, Project <lab_b>, Command <sleep 1>
------------------------------------------------------------------------------
Job <1042>, Job Name <y>, User <ada>, Project <lab_a>, Command <sleep 1>
"""


def test_lsf_project_guess_and_error_line():
    assert guess_lsf_project(BHIST_LONG) == "lab_a", "the most common, as the plugin"
    assert guess_lsf_project("") is None and guess_lsf_project(None) is None
    # 'Project' lines without a name in <...> (what makes the plugin's guess raise IndexError)
    assert guess_lsf_project("Job <1>, User <ada>, Project <lab\n     _a>, Command <x>") is None
    assert bsub_project_error({"lsf_project": "lab"}, {}, "") is None
    assert bsub_project_error({}, {"align_block": {"lsf_project": "lab"}}, "") is None
    assert bsub_project_error({}, {}, BHIST_LONG) is None
    message = bsub_project_error({"lsf_queue": "short"}, {}, "")
    assert "\n" not in message and "lsf_project=NAME" in message and "profiles/lsf" in message


def test_lsf_without_project_or_job_history_stops_before_any_job(demo, tmp_path):
    """A fresh LSF account (no job history) and no lsf_project: the plugin would raise
    a bare IndexError or submit without -P; the workflow stops first, in one line."""
    state = tmp_path / "state"
    cfg_path = write_config(tmp_path / "cfg.yaml", cluster_config(demo["root"] / "data", tmp_path / "out"))
    proc = _snakemake("--profile", "profiles/lsf", "--configfile", cfg_path,
                      "--directory", str(tmp_path / "w"), "--default-resources", "lsf_queue=short",
                      env=_env(state))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in text.splitlines() if "no LSF project" in line]
    assert len(lines) == 1 and "--default-resources lsf_project=NAME" in lines[0], text[-3000:]
    assert "IndexError" not in text
    assert not [c for c in _calls(state, "bsub")], "no job was submitted"
    assert _calls(state, "bhist"), "the job history was asked (as the plugin does)"
