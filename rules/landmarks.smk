# QC: target registration error per stage on landmark pairs (landmarks: BigWarp or
# plain CSV; the older truth: .npz feeds the same rule).


rule landmarks:
    input:
        unpack(field_inputs),
        landmarks=LANDMARKS or [],
        affine=GLOBAL_AFFINE,
    output:
        stages=f"{OUT}/qc/landmarks.tsv",
        points=f"{OUT}/qc/landmarks_points.tsv",
    params:
        fixed=CFG["fixed"],
        moving=CFG["moving"],
        units=CFG["landmarks_units"],
    log:
        f"{OUT}/logs/landmarks.log",
    benchmark:
        f"{OUT}/benchmarks/landmarks.tsv"
    localrule: True
    script:
        "../scripts/landmarks.py"
