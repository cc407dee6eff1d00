"""Run bigstream on a benchmark's demo pair with snakestream's settings; write time and TRE.

Runs bigstream's ``alignment_pipeline`` (global steps, whole images, fixed mask) and then
``distributed_piecewise_alignment_pipeline`` (block steps, blocksize, overlap, fixed mask,
``static_transform_list=[global affine]``) on a local Dask cluster of single-threaded
workers (ITK pinned to 1 thread, as snakestream's jobs), and writes a JSON with
``wall_s, global_wall_s, blocks_wall_s, cpu_s, tre_global, tre_blocks`` and details.
``cpu_s`` is this process plus its reaped children (the Dask workers).

bigstream 5.0.3 needs zarr 2 (``from zarr import blosc``) while snakestream needs zarr 3,
so it runs in its own environment; snakestream's library (PYTHONPATH=src, added
here) reads the images and computes the TRE there too. Setting it up (benchmarks/out is
not committed)::

    python3 -m venv benchmarks/out/bigstream-venv
    benchmarks/out/bigstream-venv/bin/pip install bigstream==5.0.3 "zarr<3" \\
        "numpy>=1.24" "scipy>=1.10" "SimpleITK>=2.3" "h5py>=3" "pynrrd>=1.0" "pandas>=2" \\
        "tifffile>=2023" "jsonschema>=4" "pyyaml>=6" "psutil>=5"

``benchmarks/pipeline_bench.py --bigstream-python PATH`` calls this script; by hand::

    benchmarks/out/bigstream-venv/bin/python benchmarks/bigstream_run.py \\
        RUN/config.yaml RUN/bigstream.json [--workers 2] [--tmp RUN/bigstream-tmp]

CONFIG is snakestream's config (as pipeline_bench writes it): fixed/moving images and
mask, ``truth`` (the demo's truth.npz), ``global_steps`` and ``blocks``.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# step keys snakestream accepts that bigstream's functions do not, and ``rigid``, which
# bigstream's alignment_pipeline passes itself for rigid steps (a second one is a TypeError)
SNAKESTREAM_ONLY_KEYS = ("engine", "blob_radius", "max_scale_change", "rigid")
# single-threaded ITK, BLAS and Blosc (bigstream's configure_irm reads ITK_THREADS)
THREAD_VARS = ("ITK_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLOSC_NTHREADS")


def bigstream_steps(steps, where="steps"):
    """A snakestream step list as bigstream's ``[(name, kwargs)]``, every setting explicit.

    snakestream's defaults are filled in first (they differ from bigstream's, e.g. deform
    steps sample 5 % of voxels at random and ``control_point_levels`` defaults to [1]),
    so both libraries run the same registration; then snakestream-only keys and unset
    (None) values are dropped: a ``fix_mask: None`` in a step would override the mask
    given to the pipeline.
    """
    from snakestream.register.steps import normalize_steps

    return [(name, {k: v for k, v in kw.items()
                    if v is not None and k not in SNAKESTREAM_ONLY_KEYS})
            for name, kw in normalize_steps(steps, where)]


def pin_threads(threads=1):
    """Set the thread variables before SimpleITK/Dask start (the workers inherit them)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


def load_inputs(cfg):
    """Fixed and moving voxels, their spacings and the fixed mask (numpy), via snakestream."""
    from snakestream.grid.inputs import open_image, open_mask

    fix_vol, mov_vol = open_image(cfg["fixed"]), open_image(cfg["moving"])
    mask_vol = open_mask(cfg["fixed"], fix_vol)
    return {"fix": fix_vol.read(), "mov": mov_vol.read(),
            "fix_spacing": fix_vol.spacing, "mov_spacing": mov_vol.spacing,
            "fix_mask": None if mask_vol is None else mask_vol.read()}


def local_cluster(workers):
    """A Dask LocalCluster of ``workers`` single-threaded processes, wrapped as ClusterWrap's.

    bigstream's ``@cluster`` decorator uses a given ``cluster`` object's ``.client`` as
    is; building it here (instead of ``cluster_kwargs={'cluster_type': 'local_cluster',
    ...}``) avoids ClusterWrap writing ~/.config/dask/ClusterWrap.yaml and its dashboard.
    """
    from types import SimpleNamespace

    from dask.distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None)
    return SimpleNamespace(cluster=lc, client=Client(lc))


def run_global(inp, steps):
    """bigstream's global alignment (whole images, fixed mask): 4x4 affine, z,y,x µm."""
    from bigstream.align import alignment_pipeline

    return alignment_pipeline(inp["fix"], inp["mov"], inp["fix_spacing"], inp["mov_spacing"],
                              steps, fix_mask=inp["fix_mask"])


def run_blocks(inp, steps, blocks, affine, workers, tmp):
    """bigstream's distributed piecewise alignment after ``affine``.

    Returns the displacement field (Z, Y, X, 3): z,y,x µm on the fixed grid (voxel i at
    i*spacing), to be applied before the affine, and the cluster start time (s).
    """
    from bigstream.piecewise_align import distributed_piecewise_alignment_pipeline

    fraction = blocks.get("foreground_fraction")
    t0 = time.perf_counter()
    cl = local_cluster(workers)
    start_s = time.perf_counter() - t0
    try:
        field = distributed_piecewise_alignment_pipeline(
            inp["fix"], inp["mov"], inp["fix_spacing"], inp["mov_spacing"], steps,
            blocksize=blocks["blocksize"], overlap=blocks.get("overlap", 0.5),
            fix_mask=inp["fix_mask"],
            foreground_percentage=0.5 if fraction is None else fraction,
            static_transform_list=[affine], cluster=cl, temporary_directory=str(tmp))
    finally:
        cl.client.close()
        cl.cluster.close()
    return field, start_s


def tre_of(truth_path, affine, field, spacing):
    """TRE (snakestream.qc.metrics.tre) of the affine alone and of affine + field."""
    from snakestream.demo.scene import load_truth
    from snakestream.qc.metrics import tre
    from snakestream.fields.transform import transform_points

    truth = load_truth(truth_path)
    pts, target = truth.landmarks_fixed, truth.landmarks_moving
    return (tre(transform_points(pts, affine), target),
            tre(transform_points(pts, affine, field, spacing), target))


def cpu_so_far():
    """CPU seconds of this process and of its reaped children (Dask workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(cfg, workers=2, tmp=None):
    """Global + blocks with bigstream on ``cfg``'s pair; the result dictionary."""
    import bigstream  # noqa: F401  (fail early and clearly when it is missing)
    import numpy as np

    t_read = time.perf_counter()
    inp = load_inputs(cfg)
    read_s = time.perf_counter() - t_read
    g_steps = bigstream_steps(cfg["global_steps"], "global_steps")
    b_steps = bigstream_steps(cfg["blocks"]["steps"], "blocks.steps")
    t0 = time.perf_counter()
    affine = run_global(inp, g_steps)
    t_global = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bigstream-", dir=tmp) as tmpdir:
        field, start_s = run_blocks(inp, b_steps, cfg["blocks"], affine, workers, tmpdir)
    wall = time.perf_counter() - t0
    tre_global, tre_blocks = tre_of(cfg["truth"], affine, np.asarray(field),
                                    inp["fix_spacing"])
    return {"wall_s": round(wall, 2), "global_wall_s": round(t_global, 2),
            "blocks_wall_s": round(wall - t_global, 2),
            "cluster_start_s": round(start_s, 2), "read_s": round(read_s, 2),
            "cpu_s": round(cpu_so_far(), 2), "workers": workers,
            "tre_global": tre_global, "tre_blocks": tre_blocks,
            "affine": np.asarray(affine).tolist(), "versions": versions()}


def versions():
    """Versions of the libraries that decide the result."""
    from importlib.metadata import version

    return {name: version(name) for name in
            ("bigstream", "dask", "distributed", "zarr", "SimpleITK", "numpy")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="snakestream config (YAML or JSON)")
    parser.add_argument("out", help="result JSON to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tmp", default=None,
                        help="folder for bigstream's temporary zarr copies (default: "
                             "next to OUT)")
    args = parser.parse_args(argv)
    pin_threads(1)
    import yaml  # JSON is YAML too

    cfg = yaml.safe_load(Path(args.config).read_text())
    tmp = Path(args.tmp or Path(args.out).parent / "bigstream-tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    result = run(cfg, args.workers, tmp)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k != "affine"}, default=float))


if __name__ == "__main__":
    main()
