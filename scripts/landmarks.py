"""Rule landmarks: TRE of each stage on landmark pairs -> qc/landmarks.tsv, qc/landmarks_points.tsv."""
import numpy as np

from snakestream.grid.inputs import open_image
from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.qc.landmarks import frame_of, read_landmarks, tre_tables
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, i = snakemake.params, snakemake.input  # noqa: F821
    # voxel coordinates use each image's spacing (and origin: frame_of reads Volume.origin)
    landmarks = read_landmarks(i.landmarks, units=p.units, fixed=frame_of(open_image(p.fixed)),
                               moving=frame_of(open_image(p.moving)))
    field = open_zarr_array(i.field) if "field" in i.keys() else None
    stages, points = tre_tables(landmarks, np.loadtxt(i.affine), field,
                                None if field is None else field.attrs["spacing"],
                                field_origin=None if field is None else grid_origin(field.attrs))
    print(f"{len(landmarks.names)} landmarks from {i.landmarks}")
    print(stages.to_string(index=False))
    for name, table in (("stages", stages), ("points", points)):
        with atomic_path(snakemake.output[name]) as tmp:  # noqa: F821
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
