# Stage 5: one standalone HTML QC page. Changing report settings reruns only this.


def report_inputs(wildcards):
    slabs = range(LAYOUT.n_slabs)
    inputs = {
        "affine": f"{OUT}/global/affine.mat",
        "global_qc": f"{OUT}/global/qc.json",
        "overlay": f"{OUT}/global/overlay.png",
        "aligned": f"{OUT}/aligned.zarr",
        "warp": [f"{OUT}/warp/slab_{s}.json" for s in slabs],
    }
    if BLOCKS:
        inputs.update(
            table=f"{OUT}/blocks/table.tsv",
            qc=f"{OUT}/blocks/qc.tsv",
            field=f"{OUT}/deform.zarr",
            gather=gathered(),
        )
    return inputs


rule report:
    input:
        unpack(report_inputs),
    output:
        f"{OUT}/report.html",
    params:
        fixed=CFG["fixed"],
        blocks=BLOCKS,
        truth=CFG["truth"],
        output=OUT,
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    script:
        "../scripts/report.py"
