# Stage 5: one standalone HTML QC page. Changing report settings reruns only this; the
# page shows the config as run, so a changed config reruns it too.


rule report:
    input:
        unpack(report_inputs),
    output:
        f"{OUT}/report.html",
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        blocks=BLOCKS,
        output=OUT,
        config=CFG,  # shown in the report as run
    resources:
        mem_mb=report_mem_mb,
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    script:
        "../scripts/report.py"


rule label_scores:
    input:
        unpack(label_inputs),
    output:
        labels=f"{OUT}/qc/labels.tsv",
        summary=f"{OUT}/qc/label_scores.tsv",
    params:
        fixed=lambda wc: CFG["labels"]["fixed"],
        moving=lambda wc: EXTRAS[CFG["labels"]["moving"]],
        slab_z=CFG["output_chunks"][0],
    log:
        f"{OUT}/logs/label_scores.log",
    benchmark:
        f"{OUT}/benchmarks/label_scores.tsv"
    script:
        "../scripts/label_scores.py"
