# Stage 4: resample the moving image onto the fixed grid through [affine, deform],
# one job per z slab; a slab needs only the same slab of the field.


rule init_aligned:
    input:
        fixed=volume_path(CFG["fixed"]),
    output:
        directory(f"{OUT}/aligned.zarr"),
    params:
        shape=LAYOUT.shape,
        chunks=LAYOUT.chunks,
        shard_chunks=LAYOUT.shard_chunks,
        zarr_format=LAYOUT.zarr_format,
        spacing=LAYOUT.spacing.tolist(),
        origin=LAYOUT.origin.tolist(),
        dtype=LAYOUT.moving_dtype,
        levels=CFG["pyramid_levels"],
        name="aligned",
        attrs={"description": "moving image resampled onto the fixed grid"},
    log:
        f"{OUT}/logs/init_aligned.log",
    benchmark:
        f"{OUT}/benchmarks/init_aligned.tsv"
    localrule: True
    script:
        "../scripts/init_image.py"


rule warp_slab:
    input:
        unpack(warp_inputs),
    output:
        f"{OUT}/warp/slab_{{slab}}.json",
    params:
        moving=CFG["moving"],
        order=CFG["warp"]["order"],
        use_field=BLOCKS,
    threads: CFG["threads"]["warp"]
    resources:
        mem_mb=slab_mem_mb,
        runtime=slab_runtime,
    log:
        f"{OUT}/logs/warp/slab_{{slab}}.log",
    benchmark:
        f"{OUT}/benchmarks/warp/slab_{{slab}}.tsv"
    script:
        "../scripts/warp_slab.py"
