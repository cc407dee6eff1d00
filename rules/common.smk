# Config, paths and every input function of the workflow. Parsing is cheap: it reads
# image metadata, the landmarks table if any, for a float image its coarsest pyramid
# level (or a centre box of it) to refuse NaN before any job runs, and with a fixed
# mask a small cached array of block foreground fractions (one streaming pass over the
# mask the first time; a dry run writes no cache). Each cluster job re-parses this file.
import functools
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

try:
    import snakestream  # noqa: F401
except ImportError:
    raise WorkflowError(
        f"snakestream: the library is not installed in {sys.executable}, the Python that "
        f"runs Snakemake. Fix: {sys.executable} -m pip install -e {workflow.basedir} "
        "(or run `make install` there and use .venv/bin/snakemake)."
    ) from None

from snakestream.config import (auto_mask_path, command_line_config, load_schema,
                                read_config_files, validate)
from snakestream.errors import SnakestreamError
from snakestream.grid.blocks import block_relpath
from snakestream.grid.inputs import is_auto_mask
from snakestream.grid.layout import Layout
from snakestream.io.atomic import require_writable_folder
from snakestream.smk.runtime import is_dry_run

# `snakemake -n` writes nothing: no output folder, no cache (parse time cannot ask
# Snakemake, whose executor is chosen later, so the command line is read)
DRY_RUN = is_dry_run()

SCRIPTS = os.path.join(workflow.basedir, "scripts")  # the rule scripts
PYTHON = shlex.quote(sys.executable)  # shell rules run this workflow's interpreter

if not config:
    raise WorkflowError(
        "snakestream: no configuration given. Fix: run with --configfile my.yaml "
        "(see config/config.yaml for a template, config/demo.yaml for the demo)."
    )
try:
    SCHEMA = load_schema(os.path.join(workflow.basedir, "config/schema.yaml"))
    # --config 'blocks={overlap: 0.25}' changes blocks.overlap only, read as YAML
    CFG = validate(command_line_config(
        config, workflow.config_settings.overwrite_config,
        read_config_files(workflow.overwrite_configfiles), SCHEMA), SCHEMA)
except SnakestreamError as err:
    raise WorkflowError(f"snakestream config error: {err}") from None

# The fixed grid and the block grid, computed here from image metadata (and the fixed
# mask's cached foreground fractions), so every job, local or on a cluster, sees the
# same DAG. A fixed `mask: auto` is the output of checkpoint auto_mask: until it is
# written, LAYOUT.mask_pending is set and block_layout() waits for the checkpoint.
try:
    require_writable_folder(CFG["output"], where="output", create=not DRY_RUN)
    LAYOUT = Layout.from_config(CFG, write_cache=not DRY_RUN)
except SnakestreamError as err:
    raise WorkflowError(f"snakestream input error: {err}") from None


# ---------------------------------------------------------------- paths
OUT = CFG["output"].rstrip("/")
BLOCKS = CFG["blocks"] is not None  # None: no block stage
BLOCKS_DIR = f"{OUT}/blocks"
BLOCK_TABLE = f"{BLOCKS_DIR}/table.tsv"
GLOBAL_AFFINE = f"{OUT}/global/affine.mat"
FIELD = f"{OUT}/deform.zarr"
BLOCK_FILE = f"{BLOCKS_DIR}/z{{bz}}/y{{by}}/z{{bz}}_y{{by}}_x{{bx}}.npz"
BLOCK_LOG = f"{OUT}/logs/blocks/z{{bz}}/y{{by}}/z{{bz}}_y{{by}}_x{{bx}}.log"
EXTRAS = {v["name"]: v for v in CFG["extra_volumes"]}
POINTS = {v["name"]: v for v in CFG["points"]}
CHALLENGE_FILE = (None if CFG["challenge"] is None else
                  f"{OUT}/challenge/{CFG['challenge']['name']}.h5")
# landmark pairs for the TRE tables (qc/landmarks.tsv): landmarks, or the older truth .npz
LANDMARKS = CFG["landmarks"] or CFG["truth"]
LANDMARK_TABLES = [f"{OUT}/qc/landmarks.tsv", f"{OUT}/qc/landmarks_points.tsv"]
if LANDMARKS:  # a small table: read it now, so a bad one stops the run before any job
    from snakestream.qc.landmarks import Frame, read_landmarks

    try:
        read_landmarks(LANDMARKS, units=CFG["landmarks_units"],
                       fixed=Frame(LAYOUT.spacing, LAYOUT.origin),
                       moving=Frame(LAYOUT.moving_spacing, LAYOUT.moving_origin))
    except SnakestreamError as err:
        raise WorkflowError(f"snakestream input error: {err}") from None


def warp_markers(folder, n_slabs):
    """Markers of the slab jobs that fill one output image."""
    return [f"{OUT}/{folder}/slab_{s}.json" for s in range(n_slabs)]


# Every OME-Zarr image the workflow writes, by the name of its pyramid target
# (pyramid/<name>.json): its store, the slab markers that complete level 0, and
# whether it holds labels (nearest-neighbour levels, no averaging).
OUTPUT_IMAGES = {
    "aligned": {"zarr": f"{OUT}/aligned.zarr", "slabs": warp_markers("warp", LAYOUT.n_slabs),
                "labels": False},
    **{f"extra_{name}": {"zarr": f"{OUT}/extra/{name}.zarr",
                         "slabs": warp_markers(f"warp_extra/{name}", LAYOUT.n_slabs),
                         "labels": spec["interpolation"] == "nearest"}
       for name, spec in EXTRAS.items()},
    **({"fixed_on_moving": {"zarr": f"{OUT}/fixed_on_moving.zarr",
                            "slabs": warp_markers("inverse_warp", LAYOUT.n_moving_slabs),
                            "labels": False}} if CFG["inverse"] else {}),
}


wildcard_constraints:
    bz=r"\d{4}",
    by=r"\d{4}",
    bx=r"\d{4}",
    slab=r"\d+",
    name=r"[A-Za-z0-9_.-]+",
    image="|".join(map(re.escape, OUTPUT_IMAGES)),
    role="fixed|moving",


# ---------------------------------------------------------------- input functions
def volume_path(spec):
    """An input volume's path (a folder for Zarr/N5, a file otherwise)."""
    return spec["path"]


def mask_paths(spec):
    """The mask file of a volume entry, as a list (empty without a mask)."""
    mask = spec.get("mask")
    if not mask:
        return []
    return [mask if isinstance(mask, str) else mask["path"]]


def _store_files(folder):
    """Every file of a store written by a job, but Snakemake's own timestamp file."""
    return sorted(os.path.join(top, name) for top, _, names in os.walk(folder)
                  for name in names if name != ".snakemake_timestamp")


def mask_inputs(*roles):
    """An input function: the mask files of the ``roles``' volume entries ("fixed", "moving").

    A given mask is its path (:func:`mask_paths`). A ``mask: auto`` is checkpoint
    auto_mask's store, listed file by file once it is written: Snakemake dates a
    directory output by its own timestamp file, so only the files inside make an
    edited mask (a chunk repainted in napari) newer than what was made from it.
    """
    def inputs(wildcards):
        files = []
        for role in roles:
            if is_auto_mask(CFG[role]):
                files += _store_files(checkpoints.auto_mask.get(role=role).output[0])
            else:
                files += mask_paths(CFG[role])
        return files

    return inputs


def _mask_stamp(path):
    """Modification times of a written mask store (they change when it is rewritten)."""
    return tuple(os.stat(p).st_mtime_ns for p in (path, os.path.join(path, ".zattrs")))


@functools.lru_cache(maxsize=4)
def _layout_with_mask(stamp):
    return Layout.from_config(CFG)


def block_layout():
    """LAYOUT with its blocks selected by the fixed mask.

    With ``fixed.mask: auto`` the mask is checkpoint auto_mask's output: this waits
    for it (Snakemake re-evaluates the input functions that call this once it is
    written), then makes the layout again from the written file (once per version of it).
    """
    if not (BLOCKS and is_auto_mask(CFG["fixed"])):
        return LAYOUT
    checkpoints.auto_mask.get(role="fixed")
    try:
        return _layout_with_mask(_mask_stamp(CFG["fixed"]["mask"]["path"]))
    except SnakestreamError as err:
        raise WorkflowError(f"snakestream input error: {err}") from None


def block_file(bid):
    return f"{BLOCKS_DIR}/{block_relpath(bid)}"


def blocks_for_slab(wildcards):
    """Block files whose region touches one gather slab (not the whole list)."""
    return [block_file(b) for b in block_layout().blocks_in_field_slab(int(wildcards.slab))]


def blocks_for_row(wildcards):
    return [block_file(b) for b in block_layout().blocks_in_row(int(wildcards.bz))]


def gathered(slabs=None):
    """Markers of gather slabs (all of them by default): the field is complete with them."""
    slabs = range(LAYOUT.n_field_slabs) if slabs is None else slabs
    return [f"{OUT}/gather/slab_{s}.json" for s in slabs]


def block_job(wildcards):
    """The settings of one align_block job, as the JSON scripts/align_block.py reads.

    A function of the wildcards only, so Snakemake compares it with the last run's
    (the 'params' rerun trigger): changed block settings rerun the blocks. The rule's
    command line adds the job's threads, input, output and log.
    """
    blocks = CFG["blocks"]
    params = {"fixed": CFG["fixed"], "moving": CFG["moving"],
              "steps": CFG["_block_steps"], "margin": blocks["moving_margin"],
              "on_failure": blocks["on_block_failure"]}
    return json.dumps({"wildcards": dict(wildcards.items()), "params": params},
                      sort_keys=True)


def field_inputs(wildcards):
    """The stitched field, once every gather slab has filled it (nothing without blocks)."""
    if not BLOCKS:
        return {}
    return {"field": FIELD, "gathered": gathered()}


def warp_inputs(wildcards):
    """A warp slab of aligned.zarr: the affine, and the field slabs it samples."""
    inputs = {"image": f"{OUT}/aligned.zarr", "affine": GLOBAL_AFFINE}
    if BLOCKS:
        inputs["field"] = FIELD
        inputs["slab_done"] = gathered(LAYOUT.field_slabs_for(int(wildcards.slab)))
    return inputs


def extra_dtype(wildcards):
    """dtype of an extra volume (that of its store on the fixed grid)."""
    from snakestream.grid.inputs import open_image

    return str(open_image(EXTRAS[wildcards.name]).dtype)


def warp_extra_inputs(wildcards):
    """A warp slab of an extra volume: as aligned.zarr's, into the extra's own store."""
    inputs = warp_inputs(wildcards)
    inputs["image"] = f"{OUT}/extra/{wildcards.name}.zarr"
    return inputs


def inverse_warp_inputs(wildcards):
    """A slab of fixed_on_moving.zarr: the affine and the finished inverse field."""
    inputs = {"image": f"{OUT}/fixed_on_moving.zarr", "affine": GLOBAL_AFFINE}
    if BLOCKS:
        inputs["inverse"] = f"{OUT}/inverse.zarr"
        inputs["slabs"] = warp_markers("inverse", LAYOUT.n_field_slabs)
    return inputs


def pyramid_inputs(wildcards):
    """An output image once every slab of its level 0 is written."""
    image = OUTPUT_IMAGES[wildcards.image]
    return {"image": image["zarr"], "slabs": image["slabs"]}


def report_inputs(wildcards):
    """Everything report.html shows."""
    inputs = {
        "affine": GLOBAL_AFFINE,
        "global_qc": f"{OUT}/global/qc.json",
        # the slices are resampled from the inputs; the report still comes last
        "warp": OUTPUT_IMAGES["aligned"]["slabs"],
    }
    if BLOCKS:
        inputs.update(table=BLOCK_TABLE, qc=f"{OUT}/blocks/qc.tsv", field=FIELD,
                      gather=gathered())
    if CFG["labels"]:
        inputs.update(labels=f"{OUT}/qc/labels.tsv", label_scores=f"{OUT}/qc/label_scores.tsv")
    if LANDMARKS:
        inputs["landmarks"] = LANDMARK_TABLES[0]  # TRE per stage
    return inputs


def label_inputs(wildcards):
    """Label scores: the fixed labels, the warped moving labels and the field's det J."""
    name = CFG["labels"]["moving"]
    inputs = {"fixed": volume_path(CFG["labels"]["fixed"]),
              "moving": volume_path(EXTRAS[name]),
              "warped": OUTPUT_IMAGES[f"extra_{name}"]["zarr"],
              "slabs": OUTPUT_IMAGES[f"extra_{name}"]["slabs"]}
    if BLOCKS:
        inputs["gather"] = gathered()
    return inputs


def all_targets(wildcards):
    """Every file a complete run leaves (rule all)."""
    out = [GLOBAL_AFFINE, f"{OUT}/global/qc.json"]
    if BLOCKS:
        out += [BLOCK_TABLE, f"{OUT}/blocks/qc.tsv"] + gathered()
    out += OUTPUT_IMAGES["aligned"]["slabs"] + [f"{OUT}/report.html"]
    out += [f"{OUT}/pyramid/{name}.json" for name in OUTPUT_IMAGES]
    out += [f"{OUT}/points/{name}.csv" for name in POINTS]
    if LANDMARKS:
        out += LANDMARK_TABLES
    if CFG["exports"]["itk"]:
        out.append(f"{OUT}/itk/affine.tfm")
    if CHALLENGE_FILE:
        out.append(CHALLENGE_FILE)
    if CFG["labels"]:
        out.append(f"{OUT}/qc/label_scores.tsv")
    return out
