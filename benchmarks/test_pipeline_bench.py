"""Checks of the benchmark's own logic (run with: .venv/bin/python -m pytest benchmarks).

Not part of CI's suite (testpaths = tests); the full benchmark is run by hand.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bigstream_run as br  # noqa: E402
import pipeline_bench as pb  # noqa: E402


def test_bigstream_comparison_is_optional(monkeypatch, tmp_path, capsys):
    # a None entry in sys.modules makes `import bigstream...` raise ImportError
    monkeypatch.setitem(sys.modules, "bigstream", None)
    monkeypatch.setitem(sys.modules, "bigstream.align", None)
    assert pb.bigstream_available() is False
    assert pb.bigstream_python(None) is None
    assert pb.run_bigstream(tmp_path / "config.yaml", tmp_path, None) is None
    args = SimpleNamespace(bigstream_python=None, cores=2)
    assert pb.bench_bigstream(tmp_path, args) == pb.NO_BIGSTREAM
    assert "comparison skipped" in capsys.readouterr().out
    lines = pb.compare_bigstream([{"size": "8x8x8", "bigstream": "not installed"}])
    assert lines == ["8x8x8: bigstream not installed; comparison skipped"]


def test_bigstream_python_must_exist(tmp_path):
    with pytest.raises(SystemExit):
        pb.bigstream_python(str(tmp_path / "no-python"))


def test_bigstream_steps_are_explicit_and_bigstream_only():
    steps = br.bigstream_steps(pb.QUICK_GLOBAL + pb.QUICK_BLOCKS)
    assert [name for name, _ in steps] == ["affine", "affine", "deform"]
    for _, kw in steps:
        assert "engine" not in kw and "fix_mask" not in kw
        assert None not in kw.values()
    deform = steps[2][1]
    # snakestream's defaults, not bigstream's (sampling NONE, no control_point_levels)
    assert deform["sampling"] == "RANDOM" and deform["control_point_levels"] == [1]
    assert deform["sampling_percentage"] == 0.02
    assert steps[0][1]["initial_condition"] == "CENTER"


def test_run_bigstream_reads_the_runner_json(monkeypatch, tmp_path):
    def fake_run(cmd, log, env=None):
        Path(cmd[3]).write_text(json.dumps({"wall_s": 1.0}))
        return 0, 2.0, 3.0, 100.0
    monkeypatch.setattr(pb, "run_measured", fake_run)
    res = pb.run_bigstream(tmp_path / "config.yaml", tmp_path, "python")
    assert res["wall_s"] == 1.0 and res["process_cpu_s"] == 3.0
    monkeypatch.setattr(pb, "run_measured", lambda cmd, log, env=None: (1, 0, 0, 0))
    assert pb.run_bigstream(tmp_path / "config.yaml", tmp_path, "python").startswith("failed")


def test_compare_lines():
    tre = {"median": 0.1, "p95": 0.2}
    res = {"size": "8x8x8", "wall_s": 10.0, "cpu_s": 12.0,
           "stages": {"blocks": {"cpu_s": 5.0}}, "tre": {"global": tre, "blocks": tre},
           "bigstream": {"wall_s": 4.0, "process_wall_s": 5.0, "process_cpu_s": 6.0,
                         "tre_global": tre, "tre_blocks": {"median": 0.2, "p95": 0.4}}}
    time_line, tre_line = pb.compare_bigstream([res])
    assert "ratio bigstream/snakestream wall 0.50, CPU 0.50" in time_line
    assert "ratio bigstream/snakestream 2.00" in tre_line


def test_sizes_and_steps():
    assert pb.parse_size("64x256x256") == (64, 256, 256)
    cfg = pb.make_config(Path("d"), Path("o"))
    assert [s[0] for s in cfg["blocks"]["steps"]] == ["affine", "deform"]
    assert cfg["blocks"]["blocksize"] == pb.BLOCKSIZE
    talk = pb.make_config(Path("d"), Path("o"), preset="talk")
    assert talk["blocks"]["steps"][1][1]["optimizer_args"]["numberOfIterations"] == 200


def test_job_floor_measures_each_import_on_top_of_the_last(monkeypatch, tmp_path):
    import job_floor as jf

    monkeypatch.setattr(jf, "STEPS", [("interpreter", "pass"),
                                      ("+ a busy loop", "sum(range(3_000_000))")])
    monkeypatch.setattr(jf, "SINGLE", [("a loop alone", "sum(range(3_000_000))")])
    rows = jf.main(["--repeat", "1", "--out", str(tmp_path)])
    assert [r["step"] for r in rows] == ["interpreter", "+ a busy loop", "a loop alone"]
    assert rows[0]["cpu_s"] > 0 and rows[1]["increment_s"] > 0.01  # the loop costs CPU
    assert rows[2]["increment_s"] is None and rows[2]["cpu_s"] > rows[0]["cpu_s"]
    assert json.loads((tmp_path / "job_floor.json").read_text()) == rows


def test_block_stage_records_with_a_warm_worker():
    """The worker's records are block-stage overhead; a job's client and the worker's
    child running it are one job; a job in its own process is one job too."""
    wc = [{"bz": "0001", "by": "0001", "bx": f"000{i}"} for i in range(3)]
    recs = [{"argv": ["-c"], "worker_role": "worker", "cpu_s": 0.5},
            {"argv": ["/x/scripts/align_block.py"], "worker_role": "client", "rule": "align_block",
             "wildcards": wc[0], "cpu_s": 0.03},
            {"argv": ["-c"], "worker_role": "child", "rule": "align_block", "wildcards": wc[0],
             "cpu_s": 1.5},
            {"argv": ["/x/scripts/align_block.py"], "worker_role": "job", "rule": "align_block",
             "wildcards": wc[1], "cpu_s": 1.9},
            {"argv": ["/x/.snakemake/scripts/tmpab12.gather_slab.py"], "cpu_s": 1.0}]
    assert [pb.record_stage(r) for r in recs] == ["blocks"] * 4 + ["gather"]
    jobs, worker = pb.block_job_records(recs[:4])
    assert worker == recs[:1]
    assert sorted(len(j) for j in jobs) == [1, 2]
    assert [r["worker_role"] for r in max(jobs, key=len)] == ["client", "child"]


def test_scheduler_load_samples_a_process_and_shortens_only_its_own_steps():
    import os

    import scheduler_load as sl

    sum(range(2_000_000))  # some CPU of our own to see
    cpu, threads = sl.sample(os.getpid())
    assert cpu > 0 and threads >= 1
    steps = sl.one_iteration_steps()
    assert [s[0] for s in steps] == ["affine"]
    assert steps[0][1]["optimizer_args"]["numberOfIterations"] == 1
    assert pb.PRESETS["fast"][0][1]["optimizer_args"]["numberOfIterations"] == 200
    assert sl.sample(2 ** 22 + 12345) is None  # above Linux's pid_max: no such process
