# snakestream: blockwise registration of two large 3-D volumes.
#   snakemake --cores 2 --configfile config/demo.yaml
# Stages: fixed grid -> (auto masks) -> global affine -> block table -> one job per block
#         -> gather (linear blending, per z slab) -> warp (per z slab)
from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/scheduler.smk"
include: "rules/worker.smk"
include: "rules/masks.smk"
include: "rules/global.smk"
include: "rules/blocks.smk"
include: "rules/gather.smk"
include: "rules/warp.smk"
include: "rules/report.smk"
include: "rules/landmarks.smk"
include: "rules/transform.smk"
include: "rules/cluster.smk"


onstart:
    check_cluster_setup()
    start_warm_worker()


onsuccess:
    stop_warm_worker()


onerror:
    stop_warm_worker()


rule all:
    input:
        all_targets,
    default_target: True
