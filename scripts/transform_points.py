"""Rule transform_points: a point table carried fixed -> moving or moving -> fixed."""
import numpy as np

from snakestream.io.atomic import atomic_path
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.fields.points import read_points, write_points
from snakestream.fields.transform import invert_points, transform_points
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p, i = snakemake.params, snakemake.input  # noqa: F821
    spec = p.spec
    fixed = (p.fixed_spacing, p.fixed_origin)
    moving = (p.moving_spacing, p.moving_origin)
    (src_spacing, src_origin), (dst_spacing, dst_origin) = (
        (fixed, moving) if spec["direction"] == "fixed_to_moving" else (moving, fixed))
    pts, table = read_points(i.points, spec["units"], src_spacing, origin=src_origin)
    affine = np.loadtxt(i.affine)
    field = open_zarr_array(i.field) if p.use_field else None
    spacing = field.attrs["spacing"] if field is not None else None
    origin = grid_origin(field.attrs) if field is not None else None
    if spec["direction"] == "fixed_to_moving":
        out = transform_points(pts, affine, field, spacing, field_origin=origin)
    else:
        out, residual = invert_points(pts, affine, field, spacing, field_origin=origin)
        print(f"inverse residual: median {np.median(residual):.2e} µm, max {residual.max():.2e} µm")
    print(f"{len(pts)} points {spec['direction']}")
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        write_points(tmp, table, out, spec["units"], dst_spacing, origin=dst_origin)
