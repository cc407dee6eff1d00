"""Rule debug_block: one block's crops, its result and its field as NRRD files."""
import os

import numpy as np

from snakestream.fields.blockfile import load_block
from snakestream.grid.blocks import read_table
from snakestream.qc.debug import debug_block
from snakestream.io.atomic import atomic_path
from snakestream.grid.inputs import open_image
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, w = snakemake.params, snakemake.wildcards  # noqa: F821
    bid = f"z{w.bz}_y{w.by}_x{w.bx}"
    row = read_table(snakemake.input.table).set_index("id", drop=False).loc[bid]  # noqa: F821
    results, qc, _ = load_block(snakemake.input.block)  # noqa: F821
    affine = np.loadtxt(snakemake.input.affine)  # noqa: F821
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        os.makedirs(tmp)
        for path in debug_block(tmp, row, results, open_image(p.fixed), open_image(p.moving),
                                affine, margin=p.margin):
            print("wrote", os.path.basename(path))
    print(f"block {bid}: status {qc['status']} {qc.get('reason', '')}")
