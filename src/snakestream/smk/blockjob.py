"""One align_block job: read the block's table row, register it, write its own file.

``run(job)`` is what the rule runs, in the job's own process or in a child of the warm
worker (:mod:`snakestream.smk.worker`). ``job`` is the mapping the rule passes
(``snakestream.smk.worker.Job`` gives it attribute access, like Snakemake's ``snakemake``).
"""
import os
import resource

import numpy as np

from snakestream.register.block_stage import align_block
from snakestream.fields.blockfile import save_block
from snakestream.grid.blocks import below_threshold_qc, read_row
from snakestream.errors import AlignmentError
from snakestream.io.atomic import atomic_path
from snakestream.grid.inputs import open_image, open_mask
from snakestream.smk.runtime import rule_context
from snakestream.smk import worker


def run(job):
    """Align one block as the rule describes it (input table/affine, params, output)."""
    job = worker.Job.of(job)
    with rule_context(job):
        p, w = job.params, job.wildcards
        bid = f"z{w.bz}_y{w.by}_x{w.bx}"
        row = read_row(job.input.table, bid)
        if not row["aligned"]:  # below the foreground threshold: record it, read no pixels
            results, qc = [], below_threshold_qc(row)
        else:
            fix, mov = open_image(p.fixed), open_image(p.moving)
            affine = np.loadtxt(job.input.affine)
            results, qc = align_block(row, p.steps, fix, mov, affine, margin=p.margin,
                                      fix_mask_vol=open_mask(p.fixed, fix),
                                      mov_mask_vol=open_mask(p.moving, mov),
                                      threads=job.threads,
                                      log=lambda m: print(m, flush=True))
        qc["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        qc["process"] = "warm worker" if worker.role() == "child" else "own"
        qc["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")  # the SLURM job it ran in, if any
        print(f"block {bid}: {qc['status']} {qc.get('reason', '')}")
        if qc["status"] == "fallback" and p.on_failure == "fail":
            raise AlignmentError(bid, f"block registration fell back: {qc['reason']}",
                                 "inspect the block log, or set blocks.on_block_failure: fallback.")
        region = [row[k] for k in ("z0", "z1", "y0", "y1", "x0", "x1")]
        with atomic_path(job.output[0]) as tmp:
            save_block(tmp, bid, region, results, qc)
