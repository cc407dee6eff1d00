"""Global stage on a 3-level pyramid vs on level 0 alone: wall time and bytes read.

A generated pair (default 128x1024x1024 uint16 per image, 0.8 x 0.4 x 0.4 µm; smooth
waves plus noise, the moving image shifted by a few µm) is written twice per format:

- as a pyramid: level 0 plus two block-mean levels at factors (1, 2, 2) and (2, 4, 4)
  (z is halved once y/x are as coarse, as ``snakestream.io.ngff.level_factors``
  does for this spacing): N5 ``s0 s1 s2`` with ``downsamplingFactors`` (gzip, and
  raw), and OME-Zarr ``0 1 2`` with ``multiscales`` (blosc/zstd, ``snakestream.io.ngff``);
- as level 0 alone (the same ``s0``/``0`` array with no sibling levels).

The global stage (``snakestream.register.global_stage.global_align``: rigid then
affine at alignment spacing 1.6 µm, i.e. factors (2, 4, 4) from level 0) runs on
each, in a fresh process per run so the page cache is the only thing shared. Per run:
wall seconds of the whole stage and of its reading part (``downsample_volume`` of
both images, timed separately), and the bytes the process read from files
(``rchar`` of ``/proc/self/io``, all reads, compressed chunk bytes plus metadata).
The files were just written, so they are in the page cache: this measures bytes
asked for and decoding, not the disk.

Usage::

    .venv/bin/python benchmarks/pyramid_global.py --shape 64x512x512   # ~5 min on 2 busy cores
    .venv/bin/python benchmarks/pyramid_global.py --shape 32x256x256   # smoke, ~40 s
    .venv/bin/python benchmarks/pyramid_global.py                      # 128x1024x1024

Writes ``benchmarks/out/pyramid_global/results.json`` and prints a Markdown table;
the generated files are deleted at the end unless ``--keep``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

SPACING = np.array([0.8, 0.4, 0.4])
FACTORS = [(1, 1, 1), (1, 2, 2), (2, 4, 4)]
SHIFT_UM = np.array([1.6, 3.0, -2.2])  # moving = fixed moved by this (z, y, x)
ALIGNMENT_SPACING = 1.6
ITERATIONS = 100


def parse_shape(text):
    shape = tuple(int(n) for n in text.lower().split("x"))
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not ZxYxX")
    return shape


def render_slab(shape, z0, z1, shift_um, rng):
    """Planes [z0, z1) of the scene (uint16): smooth waves plus noise, moved by `shift_um`."""
    z, y, x = (np.arange(a, b, dtype=np.float32) * s - d for a, b, s, d in
               zip((z0, 0, 0), (z1, shape[1], shape[2]), SPACING, shift_um))
    k = 2 * np.pi / 40.0  # waves of 40 µm
    wave = (np.sin(k * z)[:, None, None] * np.cos(1.3 * k * y)[None, :, None]
            + np.cos(0.7 * k * x)[None, None, :] * np.sin(0.9 * k * y)[None, :, None])
    noise = rng.integers(0, 32, size=wave.shape, dtype=np.uint16)
    return (800 + 300 * (wave + 2) ** 2).astype(np.uint16) + noise


def render(shape, shift_um, seed):
    rng = np.random.default_rng(seed)
    out = np.empty(shape, np.uint16)
    for z0 in range(0, shape[0], 16):
        z1 = min(z0 + 16, shape[0])
        out[z0:z1] = render_slab(shape, z0, z1, shift_um, rng)
    return out


def write_n5(folder, data, *, levels, compression="gzip"):
    """N5 s0 (and s1, s2 when `levels`) with downsamplingFactors; returns the container."""
    from snakestream.io import n5
    from snakestream.io.downsample import block_mean

    root = os.path.join(folder, "pyramid.n5" if levels else "level0.n5")
    for k, f in enumerate(FACTORS if levels else FACTORS[:1]):
        level = data if k == 0 else np.rint(block_mean(data, f)).astype(data.dtype)
        chunks = tuple(min(c, n) for c, n in zip((64, 128, 128), level.shape))
        n5.write_dataset(root, f"s{k}", level, SPACING * f, np.zeros(3), chunks, compression)
    n5.set_pyramid_attributes(root, SPACING, FACTORS if levels else FACTORS[:1])
    return root, "s0"


def write_ome(folder, data, *, levels):
    """OME-Zarr 0, 1, 2 (``snakestream.io.ngff``), or a group holding level 0 alone."""
    from snakestream.io import ngff
    from snakestream.io.volumes import write_volume

    if not levels:
        root = os.path.join(folder, "level0.zarr")
        write_volume(root, data, SPACING, dataset="0", chunks=(64, 128, 128))
        return root, "0"
    root = os.path.join(folder, "pyramid.zarr")
    level0 = ngff.create_image(root, data.shape, data.dtype, (64, 128, 128), SPACING,
                               levels=len(FACTORS))
    level0[...] = data
    ngff.build_pyramid(root)
    return root, "0"


def write_n5_raw(folder, data, *, levels):
    """As :func:`write_n5`, blocks uncompressed (bytes read then count voxels exactly)."""
    return write_n5(folder, data, levels=levels, compression="raw")


WRITERS = {"n5": write_n5, "n5-raw": write_n5_raw, "ome-zarr": write_ome}


def rchar():
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("rchar")).split()[1])


def run_global(fix, mov):
    """One global stage in this process: {seconds, read_seconds, bytes, lines, affine}."""
    from snakestream.io.volumes import open_volume
    from snakestream.register.global_stage import downsample_volume, global_align
    from snakestream.register.steps import normalize_steps

    steps = normalize_steps([
        ["rigid", {"alignment_spacing": ALIGNMENT_SPACING, "shrink_factors": [2, 1],
                   "smooth_sigmas": [3.2, 1.6], "initial_condition": "CENTER",
                   "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                      "numberOfIterations": ITERATIONS}}],
        ["affine", {"alignment_spacing": ALIGNMENT_SPACING, "shrink_factors": [2, 1],
                    "smooth_sigmas": [3.2, 1.6],
                    "optimizer_args": {"learningRate": 0.25, "minStep": 0.0,
                                       "numberOfIterations": ITERATIONS}}]], "global_steps")
    fix_vol, mov_vol = open_volume(*fix), open_volume(*mov)
    lines = []
    b0, t0 = rchar(), time.perf_counter()
    for vol in (fix_vol, mov_vol):
        downsample_volume(vol, ALIGNMENT_SPACING, log=lines.append)
    read_seconds, read_bytes = time.perf_counter() - t0, rchar() - b0
    b0, t0 = rchar(), time.perf_counter()
    affine, _ = global_align(steps, fix_vol, mov_vol, threads=2,
                             log=lambda m: lines.append(m) if "stage" in m else None)
    return {"seconds": time.perf_counter() - t0, "bytes": rchar() - b0,
            "read_seconds": read_seconds, "read_bytes": read_bytes,
            "lines": lines, "translation_um": affine[:3, 3].tolist()}


def child(args):
    """Run one global stage (in a fresh interpreter) and print its record as JSON."""
    print(json.dumps(run_global(tuple(args.fix), tuple(args.mov))))


def measure(fix, mov):
    out = subprocess.run([sys.executable, __file__, "--child", "--fix", *fix, "--mov", *mov],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=parse_shape, default=(128, 1024, 1024))
    parser.add_argument("--formats", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fix", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--mov", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    out_dir = HERE / "out" / "pyramid_global"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pyramid_global_", dir=out_dir)
    print(f"rendering a {'x'.join(map(str, args.shape))} pair ...", flush=True)
    images = {"fix": render(args.shape, np.zeros(3), 0), "mov": render(args.shape, SHIFT_UM, 1)}
    voxel_ratio = np.prod(args.shape) / np.prod([-(-n // f) for n, f in
                                                 zip(args.shape, FACTORS[-1])])
    rows = []
    try:
        for fmt in args.formats:
            paths = {}
            for levels in (True, False):
                for name, data in images.items():
                    folder = os.path.join(work, fmt, name)
                    os.makedirs(folder, exist_ok=True)
                    paths[levels, name] = WRITERS[fmt](folder, data, levels=levels)
            for levels in (False, True):
                record = measure(paths[levels, "fix"], paths[levels, "mov"])
                record.update(format=fmt, source="pyramid" if levels else "level 0 only")
                rows.append(record)
                print(json.dumps({k: v for k, v in record.items() if k != "lines"}), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {"shape": args.shape, "spacing": SPACING.tolist(), "factors": FACTORS,
               "alignment_spacing": ALIGNMENT_SPACING, "iterations": ITERATIONS,
               "level_voxel_ratio": float(voxel_ratio), "true_shift_um": SHIFT_UM.tolist(),
               "runs": rows}
    with open(out_dir / "results.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    print(f"\nshape {args.shape}, level 2 has {voxel_ratio:.0f}x fewer voxels than level 0\n")
    print("| format | read from | global stage s | of which reading s | MB read | "
          "bytes ratio | translation found (µm, z y x) |")
    print("|---|---|---|---|---|---|---|")
    for fmt in args.formats:
        base, pyr = [r for r in rows if r["format"] == fmt]
        for r in (base, pyr):
            ratio = base["bytes"] / r["bytes"]
            print(f"| {fmt} | {r['source']} | {r['seconds']:.1f} | {r['read_seconds']:.1f} | "
                  f"{r['bytes'] / 1e6:.1f} | {ratio:.1f} | "
                  f"{', '.join(f'{v:.2f}' for v in r['translation_um'])} |")
    for r in rows:
        print(f"{r['format']}, {r['source']}: {r['lines'][0]}")


if __name__ == "__main__":
    main()
