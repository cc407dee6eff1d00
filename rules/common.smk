# Config, paths and input functions shared by every stage. Nothing here reads
# image data: each cluster job re-parses this file, so parse time stays small.
import json
import os
import shlex
import sys

SRC = os.path.join(workflow.basedir, "src")  # the snakestream library
SCRIPTS = os.path.join(workflow.basedir, "scripts")  # the rule scripts
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (SRC, os.environ.get("PYTHONPATH")) if p
)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from snakemake.exceptions import WorkflowError
from snakestream.config import load_schema, validate
from snakestream.errors import SnakestreamError
from snakestream.smk.scheduler_timers import coalesce_reevaluation_timers

# Thousands of ready block jobs make Snakemake's re-evaluation timers multiply
# (one chain per finished job); keep one (see src/snakestream/smk/scheduler_timers.py).
coalesce_reevaluation_timers()

if not config:
    raise WorkflowError(
        "snakestream: no configuration given. Fix: run with --configfile my.yaml "
        "(see config/config.yaml for a template, config/demo.yaml for the demo)."
    )
try:
    CFG = validate(config, load_schema(os.path.join(workflow.basedir, "config/schema.yaml")))
except SnakestreamError as err:
    raise WorkflowError(f"snakestream config error: {err}") from None

OUT = CFG["output"].rstrip("/")
BLOCKS = CFG["blocks"] is not None  # None: no block stage
BLOCKS_DIR = f"{OUT}/blocks"
BLOCK_TABLE = f"{BLOCKS_DIR}/table.tsv"
GLOBAL_AFFINE = f"{OUT}/global/affine.mat"
BLOCK_FILE = f"{BLOCKS_DIR}/z{{bz}}/y{{by}}/z{{bz}}_y{{by}}_x{{bx}}.npz"
BLOCK_LOG = f"{OUT}/logs/blocks/z{{bz}}/y{{by}}/z{{bz}}_y{{by}}_x{{bx}}.log"
PYTHON = shlex.quote(sys.executable)  # shell rules run this workflow's interpreter

# The fixed grid and the block grid are computed here from image metadata only
# (no pixels are read), so every job, local or on a cluster, sees the same DAG
# without checkpoints.
try:
    from snakestream.grid.layout import Layout

    LAYOUT = Layout.from_config(CFG)
except SnakestreamError as err:
    raise WorkflowError(f"snakestream input error: {err}") from None


wildcard_constraints:
    bz=r"\d{4}",
    by=r"\d{4}",
    bx=r"\d{4}",
    slab=r"\d+",


def volume_path(spec):
    """An input volume's path (a folder for Zarr/N5, a file otherwise)."""
    return spec["path"]


def mask_paths(spec):
    mask = spec.get("mask")
    if not mask:
        return []
    return [mask if isinstance(mask, str) else mask["path"]]


def block_file(bid):
    from snakestream.grid.blocks import block_relpath

    return f"{BLOCKS_DIR}/{block_relpath(bid)}"


def blocks_for_slab(wildcards):
    """Block files whose region touches one gather slab (not the whole list)."""
    return [block_file(b) for b in LAYOUT.blocks_in_field_slab(int(wildcards.slab))]


def gathered(slabs=None):
    """Markers of gather slabs (all of them by default): the field is complete with them."""
    slabs = range(LAYOUT.n_field_slabs) if slabs is None else slabs
    return [f"{OUT}/gather/slab_{s}.json" for s in slabs]


def block_job(wildcards):
    """One align_block job as the JSON that scripts/align_block.py reads (worker.Job).

    A function of the wildcards only, so Snakemake compares it with the last run's
    (the 'params' rerun trigger): changed block settings rerun the blocks. The job's
    threads come on the command line.
    """
    blocks = CFG["blocks"]
    job = {
        "rule": "align_block",
        "input": {"table": BLOCK_TABLE, "affine": GLOBAL_AFFINE},
        "output": [BLOCK_FILE.format(**wildcards)],
        "log": [BLOCK_LOG.format(**wildcards)],
        "wildcards": dict(wildcards.items()),
        "params": {"fixed": CFG["fixed"], "moving": CFG["moving"],
                   "steps": CFG["_block_steps"], "margin": blocks["moving_margin"],
                   "on_failure": blocks["on_block_failure"]},
    }
    return json.dumps(job, sort_keys=True)


def blocks_for_row(wildcards):
    return [block_file(b) for b in LAYOUT.blocks_in_row(int(wildcards.bz))]


def all_targets(wildcards):
    slabs = range(LAYOUT.n_slabs)
    out = [f"{OUT}/global/affine.mat", f"{OUT}/global/qc.json"]
    if BLOCKS:
        out += [f"{OUT}/blocks/table.tsv", f"{OUT}/blocks/qc.tsv"]
        out += gathered()
    out += [f"{OUT}/warp/slab_{s}.json" for s in slabs]
    out.append(f"{OUT}/report.html")
    return out + transform_targets()


# Cluster resources (mem_mb in MB, runtime in minutes), derived from the config and
# the image metadata by src/snakestream/smk/resources.py; computed once here, scaled by the
# retry attempt. Override per rule: --set-resources align_block:mem_mb=2000.
from snakestream.smk import resources as _res

_BLOCK_MEM_MB = _res.block_mem_mb(CFG) if BLOCKS else _res.BASE_MB
_BLOCK_RUNTIME = _res.block_runtime_min(CFG, spacing=LAYOUT.spacing) if BLOCKS else 5
_GLOBAL_MEM_MB = _res.global_mem_mb(CFG, LAYOUT.shape, LAYOUT.spacing)
_GLOBAL_RUNTIME = _res.global_runtime_min(CFG, LAYOUT.shape, LAYOUT.spacing)
_SLAB_MEM_MB = _res.slab_mem_mb(LAYOUT.chunks)
_SLAB_RUNTIME = _res.slab_runtime_min(LAYOUT.shape, LAYOUT.chunks)


def block_mem_mb(wildcards, attempt):
    """Memory for one block job, from block size and steps (MB)."""
    return _BLOCK_MEM_MB * attempt


def block_runtime(wildcards, attempt):
    """Wall time for one block job, from block size and steps (minutes)."""
    return _BLOCK_RUNTIME * attempt


def global_mem_mb(wildcards, attempt):
    """Memory for the global alignment, from the image size at alignment spacing (MB)."""
    return _GLOBAL_MEM_MB * attempt


def global_runtime(wildcards, attempt):
    return _GLOBAL_RUNTIME * attempt


def slab_mem_mb(wildcards, attempt):
    """Memory for one gather or warp slab job, from the output chunk size (MB)."""
    return _SLAB_MEM_MB * attempt


def slab_runtime(wildcards, attempt):
    """Wall time for one gather or warp slab job, from the slab size (minutes)."""
    return _SLAB_RUNTIME * attempt


# The warm worker (src/snakestream/smk/worker.py): on a local run with blocks to align, one
# process imports the block job's libraries once and forks a child per block job, so
# a block job costs a small client instead of a fresh Python with numpy, SimpleITK,
# scipy and zarr (~0.4 s each). Cluster jobs run in their own processes.
# SNAKESTREAM_WARM_WORKER=0 turns it off.
from snakestream.smk import worker as _worker

_WARM = {}


def _blocks_to_align():
    try:
        return any(job.rule.name == "align_block" for job in workflow.dag.needrun_jobs())
    except Exception:  # an internal API of Snakemake's; assume there are
        return True


onstart:
    if (BLOCKS and workflow.local_exec and not workflow.touch
            and os.environ.get(_worker.ENV_SWITCH) != "0" and _blocks_to_align()):
        try:
            _WARM["proc"], _WARM["path"] = _worker.start(f"{OUT}/logs/warm_worker.log")
            os.environ[_worker.ENV_ADDRESS] = _worker.advertise(_WARM["path"])
        except OSError as err:
            print(f"snakestream: {err}; block jobs run in their own processes.",
                  file=sys.stderr)


def _stop_warm_worker():
    if _WARM:
        os.environ.pop(_worker.ENV_ADDRESS, None)
        _worker.stop(_WARM.pop("proc"), _WARM.pop("path"))


onsuccess:
    _stop_warm_worker()


onerror:
    _stop_warm_worker()
