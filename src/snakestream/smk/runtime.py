"""What every rule script does first: pin threads, log to the rule's log, fail in one line."""

import contextlib
import os
import sys
import traceback

import numpy as np

from snakestream.errors import InputError
from snakestream.io.volumes import open_volume

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMEXPR_NUM_THREADS",
                "BLOSC_NTHREADS")


def pin_threads(threads):
    """Limit ITK, OpenMP, BLAS and Blosc to ``threads`` so a 1-core job uses 1 core."""
    threads = max(1, int(threads))
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        import numcodecs.blosc as blosc

        blosc.set_nthreads(threads)
    except Exception:  # blosc is optional for some stores
        pass
    return threads


@contextlib.contextmanager
def rule_context(snakemake, threads=None):
    """Pin threads (``threads`` overrides the job's), send output to ``snakemake.log[0]``, turn known errors into one line.

    A :class:`~snakestream.errors.SnakestreamError` is written to the log and to
    stderr as its single line and the job exits with status 1; other errors keep
    their traceback in the log.
    """
    from snakestream.errors import SnakestreamError

    pin_threads(threads or snakemake.threads)
    log_path = snakemake.log[0] if len(snakemake.log) else os.devnull
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        try:
            yield log
        except SnakestreamError as err:
            print(f"ERROR {err}", file=log, flush=True)
            print(f"snakestream error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
        except Exception:
            traceback.print_exc(file=log)
            raise


def open_image(spec):
    """Open the fixed or moving volume from its config mapping (path, dataset, spacing)."""
    return open_volume(spec["path"], spec.get("dataset"), spec.get("spacing"))


def open_mask(spec, image_vol):
    """Open a config ``mask`` entry (path string or {path, dataset}) in ``image_vol``'s frame.

    A mask without its own spacing metadata is taken to span the same physical
    extent as its image. Returns None when no mask is configured.
    """
    mask = spec.get("mask")
    if not mask:
        return None
    path, dataset = (mask, None) if isinstance(mask, str) else (mask["path"], mask.get("dataset"))
    try:
        vol = open_volume(path, dataset)
    except InputError as err:
        if "spacing" not in str(err):
            raise
        shape = np.asarray(open_volume(path, dataset, spacing=[1.0, 1.0, 1.0]).shape)
        spacing = np.asarray(image_vol.shape) * image_vol.spacing / shape
        return open_volume(path, dataset, spacing=spacing.tolist())
    check_mask_extent(vol, image_vol)
    return vol


def check_mask_extent(mask_vol, image_vol):
    """InputError unless a mask spans its image's physical extent (within one mask voxel)."""
    mask_extent = np.asarray(mask_vol.shape) * mask_vol.spacing
    image_extent = np.asarray(image_vol.shape) * image_vol.spacing
    if np.any(np.abs(mask_extent - image_extent) > mask_vol.spacing + 1e-6):
        raise InputError(mask_vol.path,
                         f"mask covers {np.round(mask_extent, 2).tolist()} µm (z,y,x) but its "
                         f"image {image_vol.path} covers {np.round(image_extent, 2).tolist()} µm.",
                         "use the mask made for this image, or fix its spacing metadata.")
