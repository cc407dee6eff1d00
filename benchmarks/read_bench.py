"""Read speed of N5 and Zarr inputs: the old N5 codec and zarr-python vs tensorstore.

One generated volume (default 128x1024x1024 uint16, 268 MB; smooth blobs plus noise,
gzip level 6, chunks 64x128x128) is written as N5 (by ``snakestream.io.n5``, i.e.
tensorstore) and as Zarr v2 (by zarr-python). Each is then read

- in full, through the format's opener and its reader (what ``open_volume(...).read()``
  calls);
- as block-job crops: `--regions` regions of a 48x96x96 block plus a 12x24x24 margin
  on each side (72x144x144 voxels) at random positions (same positions for every
  reader), each opened afresh and read, as a block job does.

Readers, old against new: the library's ``io/n5.py`` and ``io/zarr_store.py`` as they
were before tensorstore (the hand-written N5 codec; Zarr read by zarr-python), taken
from git at run time (``git show REF:src/snakestream/io/<module>.py``, REF the parent
of the commit that removed the codec) into a temporary folder, so they are never part
of the library; against today's modules (tensorstore for N5 and for Zarr regions, on
all cores and on one thread as a 1-thread job). Reported per reader: wall seconds, CPU
seconds (this process, all threads) and MB/s of voxels delivered (wall), best of
`--repeat` runs with readers interleaved. The
files are read from the page cache (they were just written): this measures the
codecs and copying, not the disk. Import cost of each library in a fresh
interpreter is measured too (CPU s, median of 3), since a block job pays it.

Usage::

    .venv/bin/python benchmarks/read_bench.py              # ~2-3 min on 2 cores
    .venv/bin/python benchmarks/read_bench.py --shape 128x512x512 --regions 5 --repeat 1  # smoke
    .venv/bin/python benchmarks/read_bench.py --old-ref <commit>

Writes ``benchmarks/out/read_bench/results.json`` and prints a Markdown table; the
generated volumes are deleted at the end unless ``--keep``.
"""

import argparse
import importlib.util
import json
import os
import shutil
import statistics
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
CODEC_MARK = "_n5_decode_block"  # a name only the hand-written codec had


def parse_shape(text):
    """'ZxYxX' -> tuple of 3 int."""
    shape = tuple(int(n) for n in text.lower().split("x"))
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not ZxYxX")
    return shape


def make_volume(shape, seed=0):
    """A (z, y, x) uint16 volume that compresses like microscopy (~2-3x with gzip).

    Smooth blobs (sums of separable low-frequency waves) plus Poisson-like noise,
    built slab by slab so generating it costs little more than its own memory.
    """
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(0, 2 * np.pi, n, dtype=np.float32) for n in shape)
    wy = np.sin(3 * y)[:, None] * np.cos(5 * x)[None, :]
    out = np.empty(shape, np.uint16)
    for k in range(shape[0]):
        base = 400 + 300 * (wy * np.cos(2 * z[k]) + 1) ** 2
        out[k] = base + rng.integers(0, 16, size=shape[1:], dtype=np.uint16)
    return out


def old_ref():
    """The commit before tensorstore: io/n5.py is the hand codec, Zarr read by zarr-python."""
    removed = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%H", "-S", CODEC_MARK, "--",
         "src/snakestream/io/n5.py"], check=True, capture_output=True, text=True).stdout.strip()
    if not removed:
        sys.exit("cannot find the hand-written N5 codec in git history; pass --old-ref")
    return removed + "~"


def load_old(ref, folder, module):
    """Import io/`module`.py of git `ref` from a temp copy, as module ``old_<module>``."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:src/snakestream/io/{module}.py"],
        check=True, capture_output=True, text=True).stdout
    if module == "n5" and CODEC_MARK not in source:
        sys.exit(f"io/n5.py at {ref} is not the hand-written codec; pass --old-ref")
    file = Path(folder) / f"old_{module}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"old_{module}", file)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def write_inputs(data, folder, chunks):
    """N5 (library writer, gzip) and Zarr v2 (zarr-python, gzip 6) copies of `data`."""
    import numcodecs
    import zarr

    from snakestream.io import n5

    times = {}
    n5_path, zarr_path = Path(folder) / "vol.n5", Path(folder) / "vol.zarr"
    t = time.perf_counter()
    n5.write_dataset(str(n5_path), "s0", data, SPACING, np.zeros(3), chunks)
    times["n5 (tensorstore)"] = time.perf_counter() - t
    t = time.perf_counter()
    arr = zarr.create_array(str(zarr_path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                            zarr_format=2, compressors=numcodecs.GZip(level=6),
                            attributes={"spacing": SPACING.tolist()})
    arr[...] = data
    times["zarr v2 (zarr-python)"] = time.perf_counter() - t
    return n5_path, zarr_path, times


def readers(old_n5, old_zarr, n5_path, zarr_path):
    """format -> reader name -> (open() returning reader(slices), threads or None).

    open() is the format module's ``open_dataset`` (metadata, dataset discovery), as
    ``open_volume`` calls it. ``threads`` is put in ``OMP_NUM_THREADS`` for the case
    (as ``pin_threads`` does in a 1-thread job); None leaves tensorstore all cores.
    """
    from snakestream.io import n5, zarr_store

    def new_n5():
        return n5.open_dataset(str(n5_path), "s0").reader

    def new_zarr():
        return zarr_store.open_dataset(str(zarr_path), None).reader

    return {
        "N5": {
            "hand codec (old)": (lambda: old_n5.open_dataset(str(n5_path), "s0").reader, None),
            "tensorstore (new)": (new_n5, None),
            "tensorstore (new), 1 thread": (new_n5, 1),
        },
        "Zarr": {
            "zarr-python (old)": (lambda: old_zarr.open_dataset(str(zarr_path), None).reader, None),
            "tensorstore (new)": (new_zarr, None),
            "tensorstore (new), 1 thread": (new_zarr, 1),
        },
    }


def regions(shape, count, block=(48, 96, 96), margin=(12, 24, 24), seed=1):
    """`count` block-job crops (block + margin each side) at random positions inside `shape`."""
    rng = np.random.default_rng(seed)
    size = [b + 2 * m for b, m in zip(block, margin)]
    out = []
    for _ in range(count):
        start = [int(rng.integers(0, n - s + 1)) for n, s in zip(shape, size)]
        out.append(tuple(slice(a, a + s) for a, s in zip(start, size)))
    return out


def timed(fn):
    """(result, wall s, CPU s) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_case(open_reader, threads, shape, crops, reference):
    """Full read and region reads with one reader; checks contents against `reference`."""
    saved = os.environ.pop("OMP_NUM_THREADS", None)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        return _run_case(open_reader, shape, crops, reference)
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        if saved is not None:
            os.environ["OMP_NUM_THREADS"] = saved


def _run_case(open_reader, shape, crops, reference):
    full_slices = tuple(slice(0, n) for n in shape)

    def full():
        return np.ascontiguousarray(open_reader()(full_slices))

    data, wall_full, cpu_full = timed(full)
    assert np.array_equal(data, reference), "full read differs from the data written"
    del data

    def crops_read():
        return [np.ascontiguousarray(open_reader()(s)) for s in crops]

    parts, wall_crop, cpu_crop = timed(crops_read)
    for part, s in zip(parts, crops):
        assert np.array_equal(part, reference[s]), "region read differs from the data written"
    return {"full": (wall_full, cpu_full), "regions": (wall_crop, cpu_crop)}


def import_cpu(module, runs=3):
    """Median CPU s to import `module` in a fresh interpreter, after numpy."""
    code = ("import time, numpy; t = time.process_time(); import " + module +
            "; print(time.process_time() - t)")
    values = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                   text=True).stdout) for _ in range(runs)]
    return statistics.median(values)


def table(results, shape, crops, itemsize):
    """Markdown table of the best runs."""
    full_mb = np.prod(shape) * itemsize / 1e6
    crop_mb = sum(np.prod([s.stop - s.start for s in c]) for c in crops) * itemsize / 1e6
    lines = ["| format | reader | full read: wall s / CPU s / MB/s | "
             f"{len(crops)} region reads: wall s / CPU s / MB/s |", "|---|---|---|---|"]
    for fmt, per in results.items():
        for name, res in per.items():
            (wf, cf), (wr, cr) = res["full"], res["regions"]
            lines.append(f"| {fmt} | {name} | {wf:.2f} / {cf:.2f} / {full_mb / wf:.0f} | "
                         f"{wr:.2f} / {cr:.2f} / {crop_mb / wr:.0f} |")
    return "\n".join(lines)


def best(runs):
    """Per key, the run with the least wall time."""
    return {k: min((r[k] for r in runs), key=lambda v: v[0]) for k in runs[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=parse_shape, default=(128, 1024, 1024))
    parser.add_argument("--chunks", type=parse_shape, default=(64, 128, 128))
    parser.add_argument("--regions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--old-ref", default=None, help="git ref with the hand-written io/n5.py")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "read_bench")
    parser.add_argument("--keep", action="store_true", help="keep the generated volumes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ref = args.old_ref or old_ref()
    work = Path(tempfile.mkdtemp(prefix="data-", dir=args.out))
    try:
        old_n5, old_zarr = load_old(ref, work, "n5"), load_old(ref, work, "zarr_store")
        t = time.perf_counter()
        data = make_volume(args.shape)
        print(f"volume {args.shape} uint16, {data.nbytes / 1e6:.0f} MB, generated in "
              f"{time.perf_counter() - t:.1f} s; old codec from {ref}", flush=True)
        n5_path, zarr_path, write_s = write_inputs(data, work, args.chunks)
        sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                 for p in (n5_path, zarr_path)}
        print("written: " + ", ".join(f"{k} {v:.1f} s" for k, v in write_s.items())
              + "; on disk " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()),
              flush=True)
        crops = regions(args.shape, args.regions)
        results = {}
        for fmt, per in readers(old_n5, old_zarr, n5_path, zarr_path).items():
            runs = {name: [] for name in per}
            for _ in range(args.repeat):  # interleaved: old, new, ..., old, new, ...
                for name, (open_reader, threads) in per.items():
                    runs[name].append(run_case(open_reader, threads, args.shape, crops, data))
                    print(f"  {fmt} {name}: {runs[name][-1]}", flush=True)
            results[fmt] = {name: best(r) for name, r in runs.items()}
        imports = {m: import_cpu(m) for m in ("zarr", "tensorstore")}
        text = table(results, args.shape, crops, data.dtype.itemsize)
        print()
        print(text)
        print("\nimport CPU s (fresh interpreter, after numpy): "
              + ", ".join(f"{k} {v:.2f}" for k, v in imports.items()))
        record = {"shape": args.shape, "chunks": args.chunks, "regions": [
            [[s.start, s.stop] for s in c] for c in crops], "old_ref": ref,
            "write_s": write_s, "bytes_on_disk": sizes, "results": results,
            "import_cpu_s": imports, "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(), "table": text}
        (args.out / "results.json").write_text(json.dumps(record, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
