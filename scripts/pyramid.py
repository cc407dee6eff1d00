"""Rule pyramid: fill the coarser OME-Zarr levels of a finished image (labels: no averaging)."""

from snakestream.io.atomic import write_json
from snakestream.io.ngff import build_pyramid
from snakestream.smk.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    n = build_pyramid(snakemake.input.image, labels=snakemake.params.labels)  # noqa: F821
    write_json(snakemake.output[0], {"levels": n})  # noqa: F821
