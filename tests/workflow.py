"""Helpers to run the Snakemake workflow on generated data in a temporary folder."""
import copy
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAKEFILE = os.path.join(ROOT, "Snakefile")


def demo_config(data_dir, out_dir, **changes):
    """config/demo.yaml pointed at ``data_dir``/``out_dir``, with top-level changes."""
    with open(os.path.join(ROOT, "config", "demo.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    cfg = copy.deepcopy(cfg)
    cfg["fixed"]["path"] = os.path.join(data_dir, "fix.zarr")
    cfg["fixed"]["mask"]["path"] = os.path.join(data_dir, "fix_mask.zarr")
    cfg["moving"]["path"] = os.path.join(data_dir, "mov.h5")
    cfg["truth"] = os.path.join(data_dir, "truth.npz")
    cfg["output"] = str(out_dir)
    cfg.update(changes)
    return cfg


def write_config(path, cfg):
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return str(path)


def snakemake(config_path, workdir, *args, cores=2):
    """Run snakemake on the project's Snakefile; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    # targets and flags first: --configfile takes several values
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", SNAKEFILE, "-d", str(workdir),
           "--cores", str(cores), "--configfile", str(config_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
