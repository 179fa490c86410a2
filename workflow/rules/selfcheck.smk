# selfcheck: the suite's sanity check of its FID/KID pipeline: FID and KID between two random halves of one split
# (equal distributions) and between two class-disjoint halves (a shift). The Inception features come from the
# shared fid_stats rule (data.smk), so they are computed once per machine and reused by other papers.
register_paper("selfcheck", parts=["fid_halves"], figures=[])


def _selfcheck_inputs(w):
    c = paper_cfg("selfcheck")
    return {"stats": fid_stats(c["dataset"], f"{c['split']}-n{c['n']}", 32), "data": prepared(c["dataset"], c["split"])}


rule selfcheck_fid_halves:
    input:
        unpack(_selfcheck_inputs),
    output:
        part_path("selfcheck", "fid_halves"),
    log:
        f"{LOGS}/selfcheck/fid_halves.log",
    params:
        cfg=lambda w: cfg_hash("selfcheck"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.selfcheck halves --scale " + SCALE + " --stats {input.stats} --data {input.data} --out {output} > {log} 2>&1"
