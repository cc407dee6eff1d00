"""Rule align_block: one block's affine + deformable registration -> its own small file."""
import resource

import numpy as np

from snakestream.blockalign import align_block
from snakestream.blockfile import save_block
from snakestream.blocks import below_threshold_qc, read_row
from snakestream.errors import AlignmentError
from snakestream.io import atomic_path
from snakestream.runtime import open_image, open_mask, rule_context

with rule_context(snakemake):  # noqa: F821
    p, w = snakemake.params, snakemake.wildcards  # noqa: F821
    bid = f"z{w.bz}_y{w.by}_x{w.bx}"
    row = read_row(snakemake.input.table, bid)  # noqa: F821
    if not row["aligned"]:  # below the foreground threshold: record it, read no pixels
        results, qc = [], below_threshold_qc(row)
    else:
        fix, mov = open_image(p.fixed), open_image(p.moving)
        affine = np.loadtxt(snakemake.input.affine)  # noqa: F821
        results, qc = align_block(row, p.steps, fix, mov, affine, p.margin,
                                  open_mask(p.fixed, fix), open_mask(p.moving, mov),
                                  threads=snakemake.threads,  # noqa: F821
                                  log=lambda m: print(m, flush=True))
    qc["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f"block {bid}: {qc['status']} {qc.get('reason', '')}")
    if qc["status"] == "fallback" and p.on_failure == "fail":
        raise AlignmentError(bid, f"block registration fell back: {qc['reason']}",
                             "inspect the block log, or set blocks.on_block_failure: fallback.")
    region = [row[k] for k in ("z0", "z1", "y0", "y1", "x0", "x1")]
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        save_block(tmp, bid, region, results, qc)
