"""Rule global_align: whole-image rigid/affine alignment -> global/affine.mat."""
import json

import numpy as np

from snakestream.globalalign import global_align
from snakestream.io import atomic_path
from snakestream.runtime import open_image, open_mask, rule_context

with rule_context(snakemake) as log:  # noqa: F821 (snakemake is injected)
    p = snakemake.params  # noqa: F821
    fix, mov = open_image(p.fixed), open_image(p.moving)
    affine, qc = global_align(p.steps, fix, mov, open_mask(p.fixed, fix), open_mask(p.moving, mov),
                              threads=snakemake.threads, log=lambda m: print(m, flush=True))  # noqa: F821
    print("global affine (fixed -> moving, µm, z y x):\n", np.array2string(affine, precision=5))
    with atomic_path(snakemake.output.affine) as tmp:  # noqa: F821
        np.savetxt(tmp, affine)
    with atomic_path(snakemake.output.qc) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            json.dump({"affine": affine.tolist(), "steps": qc}, fh, indent=1)
