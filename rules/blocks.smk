# Stage 2: the block index table and one registration job per block.


rule block_table:
    input:
        fixed=volume_path(CFG["fixed"]),
        masks=mask_inputs("fixed"),
    output:
        f"{OUT}/blocks/table.tsv",
    params:
        fixed=CFG["fixed"],
        blocksize=CFG["blocks"]["blocksize"] if BLOCKS else None,
        overlap=CFG["blocks"]["overlap"] if BLOCKS else None,
        threshold=CFG["blocks"]["foreground_fraction"] if BLOCKS else None,
        cache=f"{OUT}/.cache",
    log:
        f"{OUT}/logs/block_table.log",
    benchmark:
        f"{OUT}/benchmarks/block_table.tsv"
    localrule: True
    script:
        "../scripts/block_table.py"


rule align_block:
    # Jobs are made for the blocks the mask test keeps (block_layout().blocks.aligned: at
    # parse time, or once checkpoint auto_mask has written a fixed `mask: auto`);
    # asking for another block's file records it as skipped without reading pixels.
    # A shell rule, not script:, so that a job whose warm worker runs it
    # (src/snakestream/smk/worker.py, local runs) starts no more than a small client.
    input:
        table=BLOCK_TABLE,
        affine=GLOBAL_AFFINE,
    output:
        BLOCK_FILE,
    params:
        job=block_job,
    threads: 1
    resources:
        mem_mb=block_mem_mb,
        runtime=block_runtime,
    log:
        BLOCK_LOG,
    benchmark:
        f"{OUT}/benchmarks/blocks/z{{bz}}/y{{by}}/z{{bz}}_y{{by}}_x{{bx}}.tsv"
    shell:
        "{PYTHON} {SCRIPTS}/align_block.py {threads} {input.table:q} {input.affine:q} "
        "{output:q} {log:q} {params.job:q}"


rule block_row_qc:
    input:
        table=f"{OUT}/blocks/table.tsv",
        blocks=blocks_for_row,
    output:
        f"{BLOCKS_DIR}/z{{bz}}/qc.tsv",
    params:
        blocks_dir=BLOCKS_DIR,
    log:
        f"{OUT}/logs/block_qc/z{{bz}}.log",
    benchmark:
        f"{OUT}/benchmarks/block_qc/z{{bz}}.tsv"
    localrule: True
    script:
        "../scripts/block_qc.py"


rule block_qc:
    input:
        rows=[f"{BLOCKS_DIR}/z{r:04d}/qc.tsv" for r in LAYOUT.block_rows] if BLOCKS else [],
    output:
        f"{OUT}/blocks/qc.tsv",
    params:
        blocks_dir=BLOCKS_DIR,
    log:
        f"{OUT}/logs/block_qc.log",
    benchmark:
        f"{OUT}/benchmarks/block_qc.tsv"
    localrule: True
    script:
        "../scripts/block_qc.py"


rule debug_block:
    # snakemake <output>/debug/z0001_y0002_x0003  -> NRRD crops and field of one block
    input:
        table=f"{OUT}/blocks/table.tsv",
        affine=f"{OUT}/global/affine.mat",
        block=BLOCK_FILE,
    output:
        directory(f"{OUT}/debug/z{{bz}}_y{{by}}_x{{bx}}"),
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        margin=CFG["blocks"]["moving_margin"] if BLOCKS else None,
    log:
        f"{OUT}/logs/debug/z{{bz}}_y{{by}}_x{{bx}}.log",
    benchmark:
        f"{OUT}/benchmarks/debug/z{{bz}}_y{{by}}_x{{bx}}.tsv"
    localrule: True
    script:
        "../scripts/debug_block.py"
