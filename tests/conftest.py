"""What the tests share: running the workflow on generated data, and affine geometry.

Workflow runs
    ``demo_config``/``write_config`` make a config for a generated demo pair;
    ``snakemake`` runs the project's Snakefile on it; ``run_snakemake`` and
    ``start_snakemake`` run any Snakemake command line (profiles, other Snakefiles);
    the ``demo_data`` fixture writes a demo pair once per test module.
bigstream step lists
    ``talk_steps`` holds every step list of bigstream's RnR-ExM talk, as on the slides.
Synthetic scenes
    ``extent``, ``rotation_z``, ``about_centre`` and ``box_corners`` build the known
    affines of the generated pairs (µm, z, y, x; a 4x4 affine maps fixed to moving
    points); ``render_blobs`` draws their nuclei-like blobs.

Test modules import the functions (``from conftest import snakemake``; ``tests/`` is on
``sys.path`` through pyproject.toml's ``pythonpath``) and request the fixtures.
"""
import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from realslurm import slurm_cluster  # noqa: F401  (the session's real SLURM, a fixture)

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
DEMO_SPACING = (0.8, 0.4, 0.4)  # µm, z, y, x: the demo pairs of the workflow tests
CLUSTER_SHAPE = (24, 96, 96)  # voxels, z, y, x: the pair the cluster tests run


# ---------------------------------------------------------------- configs


def demo_config(data_dir, out_dir, **changes):
    """config/demo.yaml pointed at ``data_dir``/``out_dir``, with top-level changes."""
    with open(ROOT / "config" / "demo.yaml") as fh:
        cfg = yaml.safe_load(fh)
    cfg = copy.deepcopy(cfg)
    cfg["fixed"]["path"] = os.path.join(data_dir, "fix.zarr")
    cfg["fixed"]["mask"]["path"] = os.path.join(data_dir, "fix_mask.zarr")
    cfg["moving"]["path"] = os.path.join(data_dir, "mov.h5")
    cfg["landmarks"] = os.path.join(data_dir, "landmarks.csv")
    cfg["output"] = str(out_dir)
    cfg.update(changes)
    return cfg


def write_config(path, cfg):
    """Write ``cfg`` as YAML to ``path``; returns the path as a string."""
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return str(path)



def cluster_config(data, out):
    """The demo with few iterations, smaller blocks and a lower foreground threshold.

    The cluster tests (stand-in LSF, real SLURM) run it on a CLUSTER_SHAPE pair.
    """
    return fast_settings(demo_config(data, out))


def fast_settings(cfg):
    """``cfg`` (in place) with few iterations, small blocks and small output chunks."""
    cfg.update(threads={"global": 1}, output_chunks=[16, 48, 48])
    for _, step in cfg["global_steps"]:
        step["optimizer_args"]["numberOfIterations"] = 50
    cfg["blocks"].update(blocksize=[12, 48, 48], foreground_fraction=0.3)
    for (_, step), iterations in zip(cfg["blocks"]["steps"], (30, 20)):
        step["optimizer_args"]["numberOfIterations"] = iterations
    return cfg


def zarr_arrays(path):
    """{name: array} of a Zarr array or of every array in a Zarr group (pyramids)."""
    with warnings.catch_warnings():  # Snakemake's .snakemake_timestamp in directory outputs
        warnings.simplefilter("ignore")
        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Array):
            return {"": node[...]}
        arrays = {name: array[...] for name, array in node.arrays()}
        for name, _ in node.groups():
            arrays.update({f"{name}/{k}": a for k, a in zarr_arrays(os.path.join(path, name)).items()})
        return arrays

@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """``demo_data(name, shape, seed)``: a new folder with the demo pair in ``data/``
    (``make_demo`` at DEMO_SPACING); call it from a module-scoped fixture."""
    from snakestream.demo.scene import make_demo

    def make(name, shape, seed):
        root = tmp_path_factory.mktemp(name)
        make_demo(root / "data", shape=shape, spacing=DEMO_SPACING, seed=seed)
        return root

    return make


# ---------------------------------------------------------------- running Snakemake


def workflow_env():
    """The environment of a workflow run: this checkout's library first."""
    return dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))


def workflow_args(config_path, workdir, *args, cores=2):
    """Snakemake arguments that run the project's Snakefile in ``workdir`` on a config."""
    # targets and flags first: --configfile takes several values
    return [*args, "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", str(cores),
            "--configfile", str(config_path)]


def start_snakemake(*args, cwd=None, env=None, **popen):
    """``python -m snakemake ARGS`` started in the background; returns the Popen."""
    return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                            **popen)


def run_snakemake(*args, cwd=None, env=None, timeout=900):
    """``python -m snakemake ARGS`` to the end; returns the CompletedProcess (text
    stdout/stderr), with the Snakemake process's ``pid`` as an extra attribute."""
    with start_snakemake(*args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    done.pid = proc.pid
    return done


def snakemake(config_path, workdir, *args, cores=2):
    """Run snakemake on the project's Snakefile; returns the CompletedProcess."""
    return run_snakemake(*workflow_args(config_path, workdir, *args, cores=cores),
                         env=workflow_env())


# ---------------------------------------------------------------- bigstream step lists


def talk_steps():
    """Every step list of bigstream's RnR-ExM talk (ISBI 2023), dictionaries as on the
    slides (a mask array passed to a step is ``True``: the configured mask)."""
    opt = lambda lr, n: {"learningRate": lr, "minStep": 0., "numberOfIterations": n}  # noqa: E731
    mouse_common = {"alignment_spacing": 1.0, "shrink_factors": (4, 2, 1),
                    "smooth_sigmas": (4., 2., 1.), "optimizer_args": opt(0.25, 400)}
    worm_common = {"alignment_spacing": 1.0, "shrink_factors": (2,), "smooth_sigmas": (1.5,),
                   "optimizer_args": opt(0.25, 400)}
    worm_test = {"alignment_spacing": 2.0, "shrink_factors": (2, 1), "smooth_sigmas": (12., 2.),
                 "optimizer_args": opt(0.25, 6000)}
    return {
        "zebrafish_train": [("affine", {"alignment_spacing": 4.0, "shrink_factors": (2,),
                                        "smooth_sigmas": (2.,), "optimizer_args": opt(0.25, 400),
                                        "initial_condition": "CENTER"})],
        "mouse_train": [
            ("affine", {**mouse_common, "alignment_spacing": 0.5, "shrink_factors": (8, 4, 2, 1),
                        "smooth_sigmas": (4., 4., 2., 1.)}),
            ("deform", {**mouse_common, "control_point_spacing": 32.0,
                        "control_point_levels": (1, 2, 2), "fix_mask": True, "mov_mask": True,
                        "optimizer_args": opt(10.0, 600)})],
        "worm_train": [
            ("affine", {**worm_common, "initial_condition": "CENTER"}),
            ("affine", {**worm_common, "fix_mask": True, "mov_mask": True,
                        "optimizer_args": opt(1.0, 3600)}),
            ("deform", {**worm_common, "fix_mask": True, "mov_mask": True,
                        "control_point_spacing": 32.0, "control_point_levels": (1,),
                        "alignment_spacing": 1.0, "shrink_factors": (2,),
                        "smooth_sigmas": (1.5,), "optimizer_args": opt(10.0, 60)})],
        "worm_validation": [("rigid", {"alignment_spacing": 2.0, "shrink_factors": (2.,),
                                       "smooth_sigmas": (2.,), "optimizer_args": opt(0.25, 2000),
                                       "initial_condition": "CENTER"})],
        "zebrafish_test": [("affine", {"alignment_spacing": 0.4, "shrink_factors": (2, 2),
                                       "smooth_sigmas": (2., 0.2), "optimizer_args": opt(0.25, 500),
                                       "initial_condition": "CENTER"})],
        "worm_test_global": [("rigid", {**worm_test, "initial_condition": "CENTER"}),
                             ("affine", {**worm_test, "smooth_sigmas": (2., 2.)})],
        "worm_test_blocks": [
            ("affine", {"alignment_spacing": None, "shrink_factors": (1,), "smooth_sigmas": (0.4,),
                        "optimizer_args": opt(0.25, 800), "metric": "C"}),
            ("deform", {"control_point_spacing": 3.0, "control_point_levels": (1,),
                        "alignment_spacing": None, "shrink_factors": (1,),
                        "smooth_sigmas": (0.1625,), "optimizer_args": opt(0.25, 200),
                        "metric": "C"})],
    }


# ---------------------------------------------------------------- synthetic scenes


def extent(shape, spacing):
    """Physical size (µm) between the first and last voxel centres."""
    return (np.asarray(shape) - 1) * np.asarray(spacing)


def rotation_z(degrees):
    """Rotation about z acting on (z, y, x) vectors, (3, 3)."""
    t = np.deg2rad(degrees)
    r = np.eye(3)
    r[1:, 1:] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return r


def about_centre(linear, translation, centre):
    """4x4 affine x -> L (x - c) + c + t (µm)."""
    a = np.eye(4)
    a[:3, :3] = linear
    a[:3, 3] = centre + translation - linear @ centre
    return a


def box_corners(lower, upper):
    """(8, 3) corners of the box from ``lower`` to ``upper`` (z, y, x, any unit)."""
    return np.array(np.meshgrid(*[[a, b] for a, b in zip(lower, upper)],
                                indexing="ij")).reshape(3, -1).T


def render_blobs(centres, sigmas, amplitudes, shape, spacing):
    """Isotropic gaussians (centres and sigmas in µm) evaluated exactly on a voxel grid
    of ``shape`` with ``spacing`` (µm, z, y, x); (Z, Y, X) float32."""
    spacing = np.asarray(spacing)
    out = np.zeros(shape, np.float32)
    for c, s, a in zip(centres, sigmas, amplitudes):
        lo = np.maximum(np.floor((c - 4 * s) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((c + 4 * s) / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        g = [np.exp(-0.5 * ((np.arange(lo[d], hi[d]) * spacing[d] - c[d]) / s) ** 2)
             for d in range(3)]
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += a * np.einsum("i,j,k->ijk", *g)
    return out


def pytest_collection_modifyitems(config, items):
    """The real-SLURM tests first: they mostly wait on the scheduler, so under
    ``pytest -n`` (make test) the other files run beside them instead of after."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)
