# Stage 1: whole-image (downsampled) rigid/affine alignment.


rule global_align:
    input:
        fixed=volume_path(CFG["fixed"]),
        moving=volume_path(CFG["moving"]),
        masks=mask_inputs("fixed", "moving"),
    output:
        affine=f"{OUT}/global/affine.mat",
        qc=f"{OUT}/global/qc.json",
        overlay=f"{OUT}/global/overlay.png",
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        steps=CFG["_global_steps"],
        # ITK threads come from the config, not from --cores: with 1 (the default)
        # the affine is the same bytes on a laptop and on a cluster node; ITK's
        # multi-threaded metrics sum in thread order and are not bit-reproducible
        itk_threads=CFG["threads"]["global"],
    threads: CFG["threads"]["global"]
    resources:
        mem_mb=global_mem_mb,
        runtime=global_runtime,
        # the scheduler allots the ITK threads even where --cores caps `threads` at 1
        cpus_per_task=CFG["threads"]["global"],
    log:
        f"{OUT}/logs/global_align.log",
    benchmark:
        f"{OUT}/benchmarks/global_align.tsv"
    script:
        "../scripts/global_align.py"
