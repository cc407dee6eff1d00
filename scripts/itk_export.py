"""Rule itk_export: the global affine (and its inverse) as ITK .tfm, the field as NRRD."""
import os

import numpy as np

from snakestream.fields.exports import write_itk_affine, write_itk_field
from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import open_zarr_array
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, i, o = snakemake.params, snakemake.input, snakemake.output  # noqa: F821
    affine = np.loadtxt(i.affine)
    with atomic_path(o.affine) as tmp:
        write_itk_affine(tmp, affine)
    with atomic_path(o.affine_inverse) as tmp:
        write_itk_affine(tmp, np.linalg.inv(affine))
    if p.use_field:
        field = open_zarr_array(i.field)
        with atomic_path(o.field) as tmp:
            shape = write_itk_field(tmp, field, step=p.step)
        print(f"field: {tuple(field.shape[:3])} stored, every {list(p.step)} -> {shape}, gzip")
        if p.total:
            with atomic_path(o.total) as tmp:
                write_itk_field(tmp, field, add_affine=affine, step=p.step)
    print("wrote", ", ".join(os.path.basename(str(f)) for f in o))
