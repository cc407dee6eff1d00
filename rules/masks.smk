# Stage 0: `mask: auto` -> <output>/masks/{fixed,moving}.ome.zarr, once per run.
# A checkpoint: which blocks are jobs depends on the fixed mask, so the input functions
# that list a slab's or a row's blocks (rules/common.smk, block_layout) wait for it.


checkpoint auto_mask:
    input:
        image=lambda wildcards: volume_path(CFG[wildcards.role]),
    output:
        directory(auto_mask_path(OUT, "{role}")),
    params:
        image=lambda wildcards: CFG[wildcards.role],
        settings=lambda wildcards: CFG[wildcards.role]["mask"]["auto"],
    threads: 1
    resources:
        mem_mb=auto_mask_mem_mb,
        runtime=auto_mask_runtime,
    log:
        f"{OUT}/logs/auto_mask/{{role}}.log",
    benchmark:
        f"{OUT}/benchmarks/auto_mask/{{role}}.tsv"
    script:
        "../scripts/auto_mask.py"
