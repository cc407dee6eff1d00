# Stage 6: using the transform — extra channels and labels, OME-Zarr pyramids,
# the inverse (moving -> fixed), point tables, and ITK exports.

rule init_extra:
    input:
        lambda wc: volume_path(EXTRAS[wc.name]),
    output:
        directory(f"{OUT}/extra/{{name}}.zarr"),
    params:
        shape=LAYOUT.shape,
        chunks=LAYOUT.chunks,
        shard_chunks=LAYOUT.shard_chunks,
        zarr_format=LAYOUT.zarr_format,
        spacing=LAYOUT.spacing.tolist(),
        origin=LAYOUT.origin.tolist(),
        dtype=extra_dtype,
        levels=CFG["pyramid_levels"],
        name=lambda wc: wc.name,
        attrs={"description": "moving-space volume resampled onto the fixed grid"},
    log:
        f"{OUT}/logs/init_extra/{{name}}.log",
    benchmark:
        f"{OUT}/benchmarks/init_extra/{{name}}.tsv"
    localrule: True
    script:
        "../scripts/init_image.py"


rule warp_extra_slab:
    input:
        unpack(warp_extra_inputs),
    output:
        f"{OUT}/warp_extra/{{name}}/slab_{{slab}}.json",
    params:
        moving=lambda wc: EXTRAS[wc.name],
        order=lambda wc: 0 if EXTRAS[wc.name]["interpolation"] == "nearest" else 1,
        use_field=BLOCKS,
    threads: CFG["threads"]["warp"]
    resources:
        mem_mb=slab_mem_mb,
        runtime=slab_runtime,
    log:
        f"{OUT}/logs/warp_extra/{{name}}/slab_{{slab}}.log",
    benchmark:
        f"{OUT}/benchmarks/warp_extra/{{name}}/slab_{{slab}}.tsv"
    script:
        "../scripts/warp_slab.py"


rule pyramid:
    input:
        unpack(pyramid_inputs),
    output:
        f"{OUT}/pyramid/{{image}}.json",
    params:
        labels=lambda wc: OUTPUT_IMAGES[wc.image]["labels"],
    resources:
        mem_mb=pyramid_mem_mb,
    log:
        f"{OUT}/logs/pyramid/{{image}}.log",
    benchmark:
        f"{OUT}/benchmarks/pyramid/{{image}}.tsv"
    script:
        "../scripts/pyramid.py"


rule init_inverse:
    input:
        table=BLOCK_TABLE,
    output:
        directory(f"{OUT}/inverse.zarr"),
    params:
        shape=LAYOUT.field_shape,
        chunks=LAYOUT.field_chunks,
        shard_chunks=LAYOUT.field_shard_chunks,
        zarr_format=LAYOUT.zarr_format,
        spacing=LAYOUT.field_spacing.tolist(),
        origin=LAYOUT.origin.tolist(),
        vector=True,
        dtype="float32",
        attrs={"units": "um", "axes": "z,y,x,vector(z,y,x)",
               "description": "inverse displacement e(z) on the fixed grid: moving y maps "
               "to fixed z + e(z) with z = inv(A) @ y"},
    log:
        f"{OUT}/logs/init_inverse.log",
    benchmark:
        f"{OUT}/benchmarks/init_inverse.tsv"
    localrule: True
    script:
        "../scripts/init_zarr.py"


rule inverse_slab:
    input:
        inverse=f"{OUT}/inverse.zarr",
        field=FIELD,
        gathered=gathered(),
    output:
        f"{OUT}/inverse/slab_{{slab}}.json",
    resources:
        mem_mb=field_slab_mem_mb,
        runtime=field_slab_runtime,
    log:
        f"{OUT}/logs/inverse/slab_{{slab}}.log",
    benchmark:
        f"{OUT}/benchmarks/inverse/slab_{{slab}}.tsv"
    script:
        "../scripts/inverse_slab.py"


rule init_fixed_on_moving:
    input:
        fixed=volume_path(CFG["fixed"]),
    output:
        directory(f"{OUT}/fixed_on_moving.zarr"),
    params:
        shape=LAYOUT.moving_shape,
        chunks=LAYOUT.moving_chunks,
        shard_chunks=LAYOUT.moving_shard_chunks,
        zarr_format=LAYOUT.zarr_format,
        spacing=LAYOUT.moving_spacing.tolist(),
        origin=LAYOUT.moving_origin.tolist(),
        dtype=LAYOUT.fixed_dtype,
        levels=CFG["pyramid_levels"],
        name="fixed_on_moving",
        attrs={"description": "fixed image resampled onto the moving grid (inverse transform)"},
    log:
        f"{OUT}/logs/init_fixed_on_moving.log",
    benchmark:
        f"{OUT}/benchmarks/init_fixed_on_moving.tsv"
    localrule: True
    script:
        "../scripts/init_image.py"


rule warp_fixed_slab:
    input:
        unpack(inverse_warp_inputs),
    output:
        f"{OUT}/inverse_warp/slab_{{slab}}.json",
    params:
        fixed=CFG["fixed"],
        order=CFG["warp"]["order"],
        use_field=BLOCKS,
    resources:
        mem_mb=moving_slab_mem_mb,
        runtime=moving_slab_runtime,
    log:
        f"{OUT}/logs/inverse_warp/slab_{{slab}}.log",
    benchmark:
        f"{OUT}/benchmarks/inverse_warp/slab_{{slab}}.tsv"
    script:
        "../scripts/warp_fixed_slab.py"


rule transform_points:
    input:
        unpack(field_inputs),
        points=lambda wc: POINTS[wc.name]["path"],
        affine=GLOBAL_AFFINE,
    output:
        f"{OUT}/points/{{name}}.csv",
    params:
        spec=lambda wc: POINTS[wc.name],
        fixed_spacing=LAYOUT.spacing.tolist(),
        moving_spacing=LAYOUT.moving_spacing.tolist(),
        fixed_origin=LAYOUT.origin.tolist(),
        moving_origin=LAYOUT.moving_origin.tolist(),
        use_field=BLOCKS,
    log:
        f"{OUT}/logs/points/{{name}}.log",
    benchmark:
        f"{OUT}/benchmarks/points/{{name}}.tsv"
    localrule: True
    script:
        "../scripts/transform_points.py"


rule itk_export:
    input:
        unpack(field_inputs),
        affine=GLOBAL_AFFINE,
    output:
        affine=f"{OUT}/itk/affine.tfm",
        affine_inverse=f"{OUT}/itk/affine_inverse.tfm",
        **({"field": f"{OUT}/itk/deform_field.nrrd"} if BLOCKS else {}),
        **({"total": f"{OUT}/itk/total_field.nrrd"}
           if BLOCKS and CFG["exports"]["itk_total_field"] else {}),
    params:
        use_field=BLOCKS,
        total=CFG["exports"]["itk_total_field"],
        step=CFG["exports"]["itk_field_step"],
    log:
        f"{OUT}/logs/itk_export.log",
    benchmark:
        f"{OUT}/benchmarks/itk_export.tsv"
    script:
        "../scripts/itk_export.py"


rule challenge_export:
    input:
        unpack(field_inputs),
        affine=GLOBAL_AFFINE,
    output:
        f"{OUT}/challenge/{{name}}.h5",
    params:
        name=lambda wc: wc.name,
        fixed_shape=list(LAYOUT.shape),
        fixed_spacing=LAYOUT.spacing.tolist(),
        moving_spacing=LAYOUT.moving_spacing.tolist(),
        fixed_origin=LAYOUT.origin.tolist(),
        moving_origin=LAYOUT.moving_origin.tolist(),
        slab_z=CFG["output_chunks"][0],
    log:
        f"{OUT}/logs/challenge_export/{{name}}.log",
    benchmark:
        f"{OUT}/benchmarks/challenge_export/{{name}}.tsv"
    script:
        "../scripts/challenge_export.py"
