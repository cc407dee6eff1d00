"""The demo pair rendered slab by slab, for volumes too big to render in memory.

Same truth, scene and intensity model as :mod:`snakestream.demo.scene` (same seed, same
truth and blobs), but the fixed image, its mask and the moving image are rendered
and written a few z planes at a time, so memory stays bounded (~2 GB at
1024 x 1024 planes) whatever the depth. Noise is drawn per z plane from
``(seed, plane)``, so the bytes differ from :func:`snakestream.demo.scene.make_demo`'s;
the mask is exact (each slab is rendered with a halo of the smoothing kernel's
reach). Conventions as :mod:`snakestream.demo.scene`: z,y,x, µm, voxel i at i × spacing.

    python -m snakestream.demo.large OUT_DIR --shape 256 1024 1024
"""

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import zarr

from snakestream.demo import scene as demo
from snakestream.io.atomic import atomic_path


PER_BLOB = ("centres", "precision", "radius_max", "brightness", "tex_amp", "tex_freq",
            "tex_phase")


def _blob_subset(scene, keep):
    """The scene with only the blobs where ``keep`` is true."""
    return replace(scene, **{name: getattr(scene, name)[keep] for name in PER_BLOB})


def render_planes(scene, points, centres, radii, spacing, z0):
    """:func:`demo.render` of a slab whose first plane is ``z0`` (blobs near it only)."""
    lo, hi = z0 * spacing[0], (z0 + points.shape[0] - 1) * spacing[0]
    keep = (centres[:, 0] + radii >= lo) & (centres[:, 0] - radii <= hi)
    shift = np.array([lo, 0.0, 0.0])
    radii = radii if np.ndim(radii) == 0 else radii[keep]
    return demo.render(_blob_subset(scene, keep), points, centres[keep] - shift, radii, spacing)


def slab_points(z0, z1, shape, spacing):
    """(z1 - z0, Y, X, 3) physical points (µm, z, y, x) of planes [z0, z1) of a grid of
    ``shape`` with ``spacing``."""
    points = demo.grid_points((z1 - z0,) + tuple(shape[1:]), spacing)
    points[..., 0] += z0 * spacing[0]
    return points


def _counts(values, seed, tag, z0, offset):
    """Camera counts with noise drawn per plane from (seed, tag, plane)."""
    return np.stack([demo.to_counts(v, np.random.default_rng([seed, tag, z0 + i]), offset)
                     for i, v in enumerate(values)])


def fixed_slab(scene, truth, seed, z0, z1):
    """Fixed counts of planes [z0, z1), uint16."""
    radii = demo.BLOB_CUTOFF_RADII * scene.radius_max
    points = slab_points(z0, z1, truth.fix_shape, truth.fix_spacing)
    values = render_planes(scene, points, scene.centres, radii, truth.fix_spacing, z0)
    return _counts(values, seed, 1, z0, demo.FIX_OFFSET)


def moving_slab(scene, truth, seed, z0, z1):
    """Moving counts of planes [z0, z1) of the moving grid, uint16."""
    points = slab_points(z0, z1, truth.mov_shape, truth.mov_spacing)
    pulled = truth.inverse(points.reshape(-1, 3), tol_um=1e-5).reshape(points.shape)
    stretch = np.linalg.norm(truth.affine[:3, :3], 2) * (1.0 + truth.lipschitz_bound())
    radii = demo.BLOB_CUTOFF_RADII * scene.radius_max * stretch + np.max(truth.mov_spacing)
    values = render_planes(scene, pulled, truth.transform(scene.centres), radii,
                            truth.mov_spacing, z0)
    values = demo.MOV_SCALE * np.clip(values, 0.0, None) ** demo.MOV_GAMMA
    return _counts(values, seed, 2, z0, demo.MOV_OFFSET)


def _zarr_dataset(path, shape, spacing, dtype):
    """Empty dataset ``s0`` of a new Zarr v2 group, as :func:`demo.write_zarr` writes."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    chunks = tuple(min(c, n) for c, n in zip(demo.CHUNKS, shape))
    return group.create_array("s0", shape=shape, dtype=dtype, chunks=chunks,
                              attributes={"spacing": [float(s) for s in spacing]})


def make_demo_streamed(out_dir, shape, spacing=(0.8, 0.4, 0.4), seed=0, slab=16, log=print):
    """Write fix.zarr, fix_mask.zarr, mov.h5 and truth.npz like ``demo.make_demo``.

    ``slab`` planes are rendered at a time (the mask's with a halo on each side).
    Returns the same dict of paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = demo.make_truth_transform(rng, shape, spacing, spacing)
    scene = demo.make_scene(rng, shape, spacing)
    truth.landmarks_fixed = demo.inner_landmarks(scene.centres, shape, spacing)
    truth.landmarks_moving = truth.transform(truth.landmarks_fixed)
    names = {"fix": "fix.zarr", "fix_mask": "fix_mask.zarr", "mov": "mov.h5",
             "truth": "truth.npz"}
    with contextlib.ExitStack() as stack:  # every file moves into place at the end
        tmp = {k: stack.enter_context(atomic_path(out / n)) for k, n in names.items()}
        fix = _zarr_dataset(tmp["fix"], truth.fix_shape, spacing, np.uint16)
        mask = _zarr_dataset(tmp["fix_mask"], truth.fix_shape, spacing, np.uint8)
        halo = int(np.ceil(4 * demo.MASK_SMOOTH_UM / spacing[0])) + 1  # gaussian_filter's reach
        nz = truth.fix_shape[0]
        for z0 in range(0, nz, slab):
            z1 = min(z0 + slab, nz)
            h0, h1 = max(z0 - halo, 0), min(z1 + halo, nz)
            counts = fixed_slab(scene, truth, seed, h0, h1)
            fix[z0:z1] = counts[z0 - h0:z1 - h0]
            mask[z0:z1] = demo.foreground_mask(counts, spacing)[z0 - h0:z1 - h0]
            log(f"fixed planes {z1}/{nz}")
        with h5py.File(tmp["mov"], "w") as f:
            chunks = tuple(min(c, n) for c, n in zip(demo.CHUNKS, truth.mov_shape))
            ds = f.create_dataset("ch0", shape=truth.mov_shape, dtype=np.uint16, compression="gzip",
                                  compression_opts=1, track_times=False, chunks=chunks)
            ds.attrs["element_size_um"] = np.asarray(spacing, float)
            for z0 in range(0, truth.mov_shape[0], slab // 2 or 1):
                z1 = min(z0 + (slab // 2 or 1), truth.mov_shape[0])
                ds[z0:z1] = moving_slab(scene, truth, seed, z0, z1)
                log(f"moving planes {z1}/{truth.mov_shape[0]}")
        demo.write_truth(tmp["truth"], truth)
    return {key: str(out / name) for key, name in names.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--shape", nargs=3, type=int, required=True)
    parser.add_argument("--spacing", nargs=3, type=float, default=[0.8, 0.4, 0.4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slab", type=int, default=16)
    args = parser.parse_args(argv)
    paths = make_demo_streamed(args.out_dir, tuple(args.shape), tuple(args.spacing),
                               args.seed, args.slab)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


if __name__ == "__main__":
    main()
