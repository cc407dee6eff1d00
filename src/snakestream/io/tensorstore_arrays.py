"""tensorstore as this package uses it: local-file arrays, no cache, the job's threads.

Shared by :mod:`~snakestream.io.n5` (every N5 block) and
:mod:`~snakestream.io.zarr_store` (reading Zarr v2/v3 input regions). tensorstore is
imported only when one of these is called, so a job that never reads N5 or Zarr
never pays for it.

Every read opens the array afresh (its metadata file) and then only the chunk
files its region touches; the chunk cache is off, so nothing read is kept and no
file stays open between reads (many processes read the same input at once).
Chunks are decoded on ``OMP_NUM_THREADS`` threads when that is set (as
:func:`~snakestream.smk.runtime.pin_threads` does in every rule script), else on
all cores.
"""

import functools
import os
import re

__all__ = ["failed_file", "file_spec", "open_array", "read_region"]

# tensorstore names the file it failed on:
# '... local file "<path>": <reason> [tensorstore_spec=...]'
_FILE_ERROR = re.compile(r'local file "([^"]+)": (.*?)(?: \[tensorstore_spec=.*)?$', re.S)


def _threads():
    """Decoder threads: ``OMP_NUM_THREADS`` when it is a positive integer, else None (all)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(value)) if value.isdigit() else None


@functools.lru_cache(maxsize=4)
def _context(threads):
    """A tensorstore context without chunk cache, decoding on `threads` threads (None: all)."""
    import tensorstore as ts

    limit = {"data_copy_concurrency": {"limit": threads}} if threads else {}
    return ts.Context({"cache_pool": {"total_bytes_limit": 0}, **limit})


def file_spec(folder, driver):
    """tensorstore spec of the array stored in local `folder` with `driver` ("n5", "zarr", "zarr3").

    Writes are not fsynced chunk by chunk: outputs are written under a temporary name
    and renamed when complete (:mod:`~snakestream.io.atomic`).
    """
    return {"driver": driver, "kvstore": {"driver": "file", "path": os.path.abspath(folder),
                                          "file_io_sync": False}}


def open_array(spec, **options):
    """Open (or with ``create=True`` create) the tensorstore array of `spec`.

    Returns a ``tensorstore.TensorStore`` indexed as stored (N5: x, y, z; Zarr: as
    the array). Raises ValueError (tensorstore's) when it cannot; see
    :func:`failed_file`.
    """
    import tensorstore as ts

    return ts.open(spec, context=_context(_threads()), **options).result()


def read_region(store, slices):
    """Voxels of `slices` of `store` as a C-contiguous native-order NumPy array.

    Only the chunks the region touches are read; absent chunks read as the fill value.
    """
    return store[slices].read(order="C").result()


def failed_file(exc, default):
    """(file, reason) of a tensorstore error: the file it names, else (`default`, message)."""
    found = _FILE_ERROR.search(str(exc))
    file, reason = found.groups() if found else (default, str(exc))
    return file, reason.strip().rstrip(".")
