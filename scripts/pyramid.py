"""Rule pyramid: fill the coarser OME-Zarr levels of a finished image (labels: no averaging)."""
import json

from snakestream.io import atomic_path
from snakestream.ngff import build_pyramid
from snakestream.runtime import rule_context

with rule_context(snakemake):  # noqa: F821
    n = build_pyramid(snakemake.input.image, labels=snakemake.params.labels)  # noqa: F821
    with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
        with open(tmp, "w") as fh:
            json.dump({"levels": n}, fh)
