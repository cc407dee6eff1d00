"""Rule report: one standalone HTML page with the run's QC (slices per stage, NCC, blocks,
Jacobian, landmark TRE, provenance). Reads only the slices it shows."""
import datetime
import json
import os

import pandas as pd
import numpy as np
import yaml

from snakestream.fields.jacobian import read_slab_stats
from snakestream.grid.inputs import open_image, open_mask
from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import open_zarr_array
from snakestream.qc import report as rp
from snakestream.qc.provenance import library_versions, wall_times
from snakestream.smk.runtime import rule_context


with rule_context(snakemake):  # noqa: F821
    p, i = snakemake.params, snakemake.input  # noqa: F821
    fix, mov = open_image(p.fixed), open_image(p.moving)
    print(f"report slices: {fix!r} and {mov!r}, full resolution, shown tiles only")
    with open(i.global_qc) as fh:
        steps = json.load(fh)["steps"]
    landmarks = i.get("landmarks")
    as_run = {k: v for k, v in dict(p.config).items() if not k.startswith("_")}
    provenance = {"config_text": yaml.safe_dump(json.loads(json.dumps(as_run, default=str)),
                                                sort_keys=False),
                  "versions": library_versions(),
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds"),
                  "wall_times": wall_times(os.path.join(p.output, "benchmarks"))}
    html = rp.render_report(
        fix, mov, np.loadtxt(i.affine),
        field=open_zarr_array(i.field) if p.blocks else None,
        fix_mask=open_mask(p.fixed, fix), mov_mask=open_mask(p.moving, mov),
        global_steps=steps,
        table=pd.read_csv(i.table, sep="\t") if p.blocks else None,
        qc=pd.read_csv(i.qc, sep="\t") if p.blocks else None,
        jacobian=read_slab_stats(i.gather) if p.blocks else None,
        landmarks=pd.read_csv(landmarks, sep="\t") if landmarks else None,
        labels=(pd.read_csv(i.label_scores, sep="\t"), pd.read_csv(i.labels, sep="\t"))
        if i.get("labels") else None,
        provenance=provenance, title=f"snakestream report: {p.output}")
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            fh.write(html)
