# Stage 3: stitch the block transforms into deform.zarr with linear blending,
# one job per z slab (one output chunk thick), each reading only its blocks.


rule init_deform:
    input:
        table=f"{OUT}/blocks/table.tsv",
    output:
        directory(f"{OUT}/deform.zarr"),
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
               "description": "displacement d(x): fixed x maps to A @ (x + d(x))"},
    log:
        f"{OUT}/logs/init_deform.log",
    benchmark:
        f"{OUT}/benchmarks/init_deform.tsv"
    localrule: True
    script:
        "../scripts/init_zarr.py"


rule gather_slab:
    input:
        field=f"{OUT}/deform.zarr",
        table=f"{OUT}/blocks/table.tsv",
        blocks=blocks_for_slab,
    output:
        f"{OUT}/gather/slab_{{slab}}.json",
    params:
        blocks_dir=BLOCKS_DIR,
        overlap=LAYOUT.blocks.overlap.tolist() if BLOCKS else None,  # voxels per side
        step=LAYOUT.field_step,
    threads: CFG["threads"]["gather"]
    resources:
        mem_mb=slab_mem_mb,
        runtime=slab_runtime,
    log:
        f"{OUT}/logs/gather/slab_{{slab}}.log",
    benchmark:
        f"{OUT}/benchmarks/gather/slab_{{slab}}.tsv"
    script:
        "../scripts/gather_slab.py"
