# Stage 1: fixed grid description and whole-image (downsampled) rigid/affine alignment.


checkpoint fixed_grid:
    input:
        fixed=volume_path(CFG["fixed"]),
        moving=volume_path(CFG["moving"]),
    output:
        f"{OUT}/grid.json",
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        chunks=CFG["output_chunks"],
    log:
        f"{OUT}/logs/fixed_grid.log",
    benchmark:
        f"{OUT}/benchmarks/fixed_grid.tsv"
    localrule: True
    script:
        "../scripts/fixed_grid.py"


rule global_align:
    input:
        fixed=volume_path(CFG["fixed"]),
        moving=volume_path(CFG["moving"]),
        masks=mask_paths(CFG["fixed"]) + mask_paths(CFG["moving"]),
    output:
        affine=f"{OUT}/global/affine.mat",
        qc=f"{OUT}/global/qc.json",
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        steps=CFG["_global_steps"],
    threads: CFG["threads"]["global"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    log:
        f"{OUT}/logs/global_align.log",
    benchmark:
        f"{OUT}/benchmarks/global_align.tsv"
    script:
        "../scripts/global_align.py"
