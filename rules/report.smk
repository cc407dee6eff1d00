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
