# selfcheck: the suite's sanity check of its FID/KID pipeline (FID and KID between two halves of one split).
# The Inception features come from the shared fid_stats rule (data.smk), so they are computed once per machine.
register_paper("selfcheck", parts=["fid_halves"], figures=[])


def _selfcheck_stats(w):
    c = paper_cfg("selfcheck")
    return fid_stats(c["dataset"], f"{c['split']}-n{c['n']}", 32)


rule selfcheck_fid_halves:
    input:
        stats=_selfcheck_stats,
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
        "python -m repro.selfcheck halves --scale " + SCALE + " --stats {input.stats} --out {output} > {log} 2>&1"
