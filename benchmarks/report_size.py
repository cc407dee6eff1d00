"""Size, time and peak memory of report.html on a large generated case, without registering.

Writes a fixed/moving pair (default 256x1024x1024 uint16, 0.8 x 0.4 x 0.4 µm: smooth
blobs and Poisson-like noise, so PNG compression is not flattered), the moving image
shifted by a known translation, a smooth displacement field at 4x the fixed spacing
(as ``field_downsample`` stores it), a fixed mask at 4x the spacing, and a block table
with made-up QC rows; then calls :func:`snakestream.qc.report.render_report` on them
directly (the report rule's library function) for a few slider/tile settings.

    .venv/bin/python benchmarks/report_size.py                       # 256x1024x1024
    .venv/bin/python benchmarks/report_size.py --shape 64 256 256    # quick
    .venv/bin/python benchmarks/report_size.py --reuse               # data already written

Output under ``benchmarks/out/report_size/`` (git-ignored): the data, one report per
setting and ``results.tsv`` (setting, MB, seconds, peak RSS MB of this process).
"""

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy.ndimage import gaussian_filter, map_coordinates

from snakestream.grid.geometry import translation
from snakestream.grid.layout import build_table
from snakestream.io.volumes import open_volume, write_volume
from snakestream.qc.report import render_report

SPACING = np.array([0.8, 0.4, 0.4])
OUT = Path(__file__).resolve().parent / "out" / "report_size"
SHIFT_UM = np.array([1.6, -2.4, 3.2])  # moving voxel i shows the scene at i + shift: the
# fixed -> moving affine is translation(-SHIFT_UM)


def coarse_scene(shape, seed):
    """A smooth random scene at 1/4 resolution (blob-like after thresholding)."""
    rng = np.random.default_rng(seed)
    low = gaussian_filter(rng.random(tuple(max(n // 4, 4) for n in shape)), 1.5)
    low = np.clip((low - low.mean()) / low.std(), 0, None)
    return low


def write_image(path, low, shape, offset_vox, seed, slab=16):
    """Level 0 from the coarse scene (linear zoom), shifted by ``offset_vox`` voxels,
    with noise, written slab by slab into a Zarr array with spacing metadata."""
    rng = np.random.default_rng(seed)
    arr = zarr.open(str(path), mode="w", shape=shape, chunks=(16, 256, 256), dtype="u2")
    arr.attrs["spacing"] = SPACING.tolist()
    factors = np.array(shape) / np.array(low.shape)
    for z0 in range(0, shape[0], slab):
        z1 = min(z0 + slab, shape[0])
        zz = (np.arange(z0, z1) + offset_vox[0]) / factors[0]
        yy = (np.arange(shape[1]) + offset_vox[1]) / factors[1]
        xx = (np.arange(shape[2]) + offset_vox[2]) / factors[2]
        g = np.meshgrid(zz, yy, xx, indexing="ij")
        vals = map_coordinates(low, g, order=1, mode="nearest")
        img = 200 + 1500 * vals + rng.normal(0, 40, vals.shape)
        arr[z0:z1] = np.clip(img, 0, 65535).astype("u2")
    return open_volume(str(path))


def write_inputs(root, shape):
    """The pair, mask, field and block tables under ``root``; returns their handles."""
    root.mkdir(parents=True, exist_ok=True)
    low = coarse_scene(shape, 1)
    fix = write_image(root / "fix.zarr", low, shape, (0, 0, 0), 2)
    mov = write_image(root / "mov.zarr", low, shape, SHIFT_UM / SPACING, 3)
    mask = low > 0.2
    write_volume(root / "mask.zarr", mask.astype(np.uint8),
                 (np.array(shape) * SPACING / np.array(mask.shape)).tolist())
    fshape = tuple(n // 4 for n in shape)
    rng = np.random.default_rng(4)
    field = zarr.open(str(root / "field.zarr"), mode="w", shape=fshape + (3,),
                      chunks=(16, 64, 64, 3), dtype="f4")
    field[:] = np.stack([gaussian_filter(rng.normal(0, 1, fshape), 6) * 40
                         for _ in range(3)], axis=-1)
    field.attrs["spacing"] = (SPACING * 4).tolist()
    return open_inputs(root)


def open_inputs(root):
    fix = open_volume(str(root / "fix.zarr"))
    return {"fix": fix, "mov": open_volume(str(root / "mov.zarr")),
            "mask": open_volume(str(root / "mask.zarr")),
            "field": zarr.open(str(root / "field.zarr"), mode="r")}


def fake_blocks(shape, blocksize=(64, 128, 128)):
    """A block table and QC rows (made up: status, gains, seconds, memory)."""
    table = build_table(shape, blocksize, 0.5)
    rng = np.random.default_rng(5)
    table["aligned"] = rng.random(len(table)) > 0.3
    status = np.where(table.aligned, np.where(rng.random(len(table)) > 0.05, "ok", "fallback"),
                      "skipped")
    qc = pd.DataFrame({"id": table.id, "status": status,
                       "reason": np.where(table.aligned, "", "foreground 0.1 < 0.3"),
                       "s0_affine_metric_before": -rng.uniform(0.3, 0.6, len(table)),
                       "s1_deform_metric_after": -rng.uniform(0.6, 0.9, len(table)),
                       "s0_affine_iterations": 150, "s1_deform_iterations": 100,
                       "seconds": np.where(table.aligned, rng.uniform(20, 90, len(table)), np.nan),
                       "peak_mem_mb": np.where(table.aligned, rng.uniform(400, 900, len(table)),
                                               np.nan)})
    return table, qc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 1024, 1024])
    ap.add_argument("--reuse", action="store_true", help="use the data already written")
    ap.add_argument("--settings", nargs="+", default=["9x256", "16x256", "9x512"],
                    help="slider stops x tile side, voxels")
    args = ap.parse_args()
    shape = tuple(args.shape)
    root = OUT / "x".join(map(str, shape))
    t0 = time.perf_counter()
    inputs = open_inputs(root) if args.reuse else write_inputs(root, shape)
    print(f"data: {root} ({time.perf_counter() - t0:.0f} s)")
    table, qc = fake_blocks(shape)
    rows = []
    for setting in args.settings:
        count, tile = map(int, setting.split("x"))
        t0 = time.perf_counter()
        page = render_report(inputs["fix"], inputs["mov"], translation(-SHIFT_UM),
                             field=inputs["field"], fix_mask=inputs["mask"],
                             table=table, qc=qc, count=count, tile=tile,
                             title=f"report size benchmark {shape}")
        seconds = time.perf_counter() - t0
        path = root / f"report_{setting}.html"
        path.write_text(page)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"shape": "x".join(map(str, shape)), "voxels": int(np.prod(shape)),
                     "stops_x_tile": setting, "blocks": len(table),
                     "MB": round(path.stat().st_size / 1e6, 2), "seconds": round(seconds, 1),
                     "peak_rss_mb_so_far": round(rss)})
        print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(root / "results.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
