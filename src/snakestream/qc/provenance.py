"""What the report says about how a run was made: library versions and wall time per rule."""

import glob
import os
import re
from importlib import metadata

import pandas as pd

PACKAGES = ("snakestream", "numpy", "scipy", "SimpleITK", "snakemake", "zarr", "pandas",
            "tensorstore", "h5py", "ome-zarr")


def library_versions(packages=PACKAGES):
    """``{package: version}`` of the installed ``packages`` ('not installed' if absent)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def rule_of(relpath):
    """The rule a benchmark file under ``benchmarks/`` belongs to: its first path part
    without ``.tsv`` (``blocks/z0000/...tsv`` -> ``blocks``, ``global_align.tsv`` ->
    ``global_align``)."""
    first = relpath.replace(os.sep, "/").split("/")[0]
    return re.sub(r"\.tsv$", "", first)


def wall_times(bench_dir):
    """Wall time per rule from Snakemake's benchmark TSVs (columns ``s``, ``max_rss``).

    Returns
    -------
    list of (rule, jobs, total s, longest job s, peak RSS MB), in order of total s,
    longest first; empty when there are none.
    """
    per_rule = {}
    for path in glob.glob(os.path.join(bench_dir, "**", "*.tsv"), recursive=True):
        try:
            bench = pd.read_csv(path, sep="\t")
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if "s" not in bench or bench.empty:
            continue
        rss = pd.to_numeric(bench.get("max_rss"), errors="coerce")
        rule = per_rule.setdefault(rule_of(os.path.relpath(path, bench_dir)), [0, 0.0, 0.0, 0.0])
        rule[0] += 1
        rule[1] += float(bench["s"].iloc[-1])
        rule[2] = max(rule[2], float(bench["s"].iloc[-1]))
        if rss is not None and rss.notna().any():
            rule[3] = max(rule[3], float(rss.iloc[-1]))
    rows = [(r, n, t, m, mb) for r, (n, t, m, mb) in per_rule.items()]
    return sorted(rows, key=lambda r: -r[2])
