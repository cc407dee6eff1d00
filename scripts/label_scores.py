"""Rule label_scores: Dice, its 30th percentile, HD95 (voxels) and SDlogJ, as RnR-ExM scores."""
import numpy as np
import pandas as pd

from snakestream.fields.jacobian import read_slab_stats
from snakestream.grid.inputs import open_image
from snakestream.io.atomic import atomic_path
from snakestream.io.volumes import open_volume
from snakestream.qc.labels import label_scores
from snakestream.smk.runtime import rule_context


def _write_tsv(path, rows, columns):
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).round(4).to_csv(tmp, sep="\t", index=False)


with rule_context(snakemake):  # noqa: F821
    p, i, o = snakemake.params, snakemake.input, snakemake.output  # noqa: F821
    fixed = open_image(p.fixed)
    moving = open_image(p.moving)
    moving_labels = set()
    for z0 in range(0, moving.shape[0], p.slab_z):
        moving_labels.update(np.unique(moving[z0:z0 + p.slab_z]).tolist())
    warped = open_volume(i.warped, "0")
    rows, summary = label_scores(fixed, warped, moving_labels, slab_z=p.slab_z)
    jac = read_slab_stats(i.gather) if "gather" in i.keys() else None
    if jac is not None:
        summary.update(sdlogj=jac["sdlogj"], folded_voxels=jac["folded"])
    _write_tsv(o.labels, rows, ["label", "fixed_voxels", "warped_voxels", "dice", "hd95_vox"])
    _write_tsv(o.summary, [summary], list(summary))
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items()))
