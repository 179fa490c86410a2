# selfcheck: the suite's sanity check of its FID/KID pipeline: FID and KID between two random halves of one split
# (equal distributions) and between two class-disjoint halves (a shift). The Inception features come from the
# shared fid_stats rule (data.smk), so they are computed once per machine and reused by other papers.
register_paper("selfcheck", parts=["fid_halves"], figures=[])
SELFCHECK = paper_cfg("selfcheck")


rule selfcheck_fid_halves:
    input:
        stats=fid_stats(SELFCHECK["dataset"], f"{SELFCHECK['split']}-n{SELFCHECK['n']}", 32),
        data=prepared(SELFCHECK["dataset"], SELFCHECK["split"]),
    output:
        part_path("selfcheck", "fid_halves"),
    log:
        f"{LOGS}/selfcheck/fid_halves.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("selfcheck"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.selfcheck halves --scale {params.scale} --stats {input.stats} --data {input.data}"
        " --out {output} > {log} 2>&1"
