"""Rule auto_mask: a volume's foreground at auto_mask.spacing -> masks/<role>.ome.zarr."""
from snakestream.grid.automask import compute_mask, write_mask
from snakestream.grid.inputs import open_image
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    p = snakemake.params  # noqa: F821
    settings = p.settings
    mask, spacing = compute_mask(open_image(p.image), spacing=settings["spacing"],
                                 smooth_um=settings["smooth_um"],
                                 threshold=settings["threshold"], log=print)
    write_mask(snakemake.output[0], mask, spacing,  # noqa: F821
               name=f"{snakemake.wildcards.role} mask")  # noqa: F821
    print(f"wrote {snakemake.output[0]}: {list(mask.shape)} voxels at "  # noqa: F821
          f"{[round(float(s), 4) for s in spacing]} µm (z, y, x)")
