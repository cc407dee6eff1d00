"""One small file per block: its transforms and its QC numbers.

Format: NumPy ``.npz`` holding ``kinds`` (transform kinds in composite order,
applied last-first), ``fixed_<i>``/``params_<i>`` per transform, ``region``
(the block's fixed voxel region, z0,z1,y0,y1,x0,x1) and ``qc`` (JSON text).
The global affine is not repeated here: the block's full transform is
``global ∘ T1 ∘ T2 ...``.
"""

import json
import zipfile

import numpy as np

from snakestream.errors import BlockFileError
from snakestream.register.align import StepResult
from snakestream.register.sitk_transforms import composite

STATUSES = ("ok", "fallback", "skipped")


def save_block(path, bid, region, results, qc):
    """Write a block file.

    Parameters
    ----------
    path : str
        File to write; should be a temporary name (see ``io.volumes.atomic_path``).
    bid : str
        Block id.
    region : sequence of 6 int
        The block's fixed voxel region z0, z1, y0, y1, x0, x1.
    results : list of StepResult
        The block's own transforms, in composite order.
    qc : dict
        JSON-serialisable QC record (numpy scalars allowed).
    """
    arrays = {"id": np.array(bid), "region": np.asarray(region, dtype=np.int64),
              "kinds": np.array([r.kind for r in results], dtype="U8"),
              "qc": np.array(json.dumps(qc, default=_json_default))}
    for i, r in enumerate(results):
        arrays[f"fixed_{i}"] = np.asarray(r.fixed_parameters, dtype=np.float64)
        arrays[f"params_{i}"] = np.asarray(r.parameters, dtype=np.float64)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def load_block(path):
    """Read a block file written by :func:`save_block`.

    Parameters
    ----------
    path : str

    Returns
    -------
    results : list of StepResult
        The block's own transforms (global affine excluded).
    qc : dict
        Its QC record; ``status`` is one of :data:`STATUSES`.
    region : (6,) int64 array
        z0, z1, y0, y1, x0, x1 of the block on the fixed grid (voxels).

    Raises
    ------
    BlockFileError
        The file is missing, unreadable or has an unknown status (one-line message).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            kinds = [str(k) for k in data["kinds"]]
            results = [StepResult(name=k, kind=k, parameters=data[f"params_{i}"],
                                  fixed_parameters=data[f"fixed_{i}"])
                       for i, k in enumerate(kinds)]
            qc = json.loads(str(data["qc"]))
            region = data["region"]
    except FileNotFoundError:
        raise BlockFileError(path, "block file is missing.",
                             "run snakemake again; it recomputes missing blocks.") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise BlockFileError(path, f"block file is corrupt or incomplete ({type(err).__name__}).",
                             "delete this file and run snakemake again; only this block is "
                             "recomputed.") from None
    if qc.get("status") not in STATUSES:
        raise BlockFileError(path, f"unknown block status {qc.get('status')!r}.",
                             "delete this file and run snakemake again.")
    return results, qc, region


def block_transform(results):
    """SimpleITK composite of a block's own transforms (without the global affine)."""
    return composite([r.to_sitk() for r in results])
