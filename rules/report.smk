# Stage 5: one standalone HTML QC page. Changing report settings reruns only this.


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
        mem_mb=report_mem_mb,
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    script:
        "../scripts/report.py"
