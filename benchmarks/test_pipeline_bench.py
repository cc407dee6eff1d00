"""Checks of the benchmark's own logic (run with: .venv/bin/python -m pytest benchmarks).

Not part of CI's suite (testpaths = tests); the full benchmark is run by hand.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_bench as pb  # noqa: E402


def test_bigstream_comparison_is_optional(monkeypatch):
    # a None entry in sys.modules makes `import bigstream...` raise ImportError
    monkeypatch.setitem(sys.modules, "bigstream", None)
    monkeypatch.setitem(sys.modules, "bigstream.align", None)
    assert pb.bigstream_available() is None
    assert pb.run_bigstream(Path("unused"), {}) is None
    lines = pb.compare_bigstream([{"size": "8x8x8", "bigstream": "not installed"}])
    assert lines == ["8x8x8: bigstream not installed; comparison skipped"]


def test_sizes_and_steps():
    assert pb.parse_size("64x256x256") == (64, 256, 256)
    cfg = pb.make_config(Path("d"), Path("o"))
    assert [s[0] for s in cfg["blocks"]["steps"]] == ["affine", "deform"]
    assert cfg["blocks"]["blocksize"] == pb.BLOCKSIZE
    talk = pb.make_config(Path("d"), Path("o"), preset="talk")
    assert talk["blocks"]["steps"][1][1]["optimizer_args"]["numberOfIterations"] == 200
