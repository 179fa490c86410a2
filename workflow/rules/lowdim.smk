# Li & Yan (NeurIPS 2024): dimension-free error of the proposed DDPM coefficients. No dataset, numpy only.
LOWDIM = f"{RESULTS}/lowdim"
LOWDIM_CAPTIONS = {
    "kl_tv_vs_d": "Li & Yan's figure (p.9) redrawn: KL and TV between the data at t = 1 and the sampler's output "
    "against the ambient dimension d (k = 8, exact Tier 1), one line per number of steps T (darker = larger T). "
    "The proposed coefficients (red) are flat in d; the usual designs grow with d.",
    "kl_tv_vs_d_linear": "As the redrawn figure, on DDPM's linear schedule rescaled to T steps.",
    "error_vs_T": "TV at the largest d against T (exact Tier 1), with least-squares slopes; grey: the theorem's 1/sqrt(T).",
    "curved_vs_d": "Tier 2 (discs tangent to a curved k = 8 manifold, exact score), largest T, means over units with "
    "95% intervals against d. Left: KL between the data and the sampler at t = 1, estimated on a chart statistic (a "
    "lower bound, exact on the Gaussian tier). Right: KL of the path measures (an upper bound), with the negative "
    "control 1.02 sigma*^2 (orange).",
}

register_paper(
    "lowdim",
    parts=["exact", "summary"] + [f"curved_s{s}" for s in SEEDS],
    figures=list(LOWDIM_CAPTIONS),
)


rule lowdim_exact:
    output:
        part=part_path("lowdim", "exact"),
        grid=f"{LOWDIM}/exact_grid.csv",
    log:
        f"{LOGS}/lowdim/exact.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("lowdim"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV_NUMPY
    shell:
        "python -m repro.lowdim exact --scale {params.scale} --out {output.part} --out-grid {output.grid} > {log} 2>&1"


rule lowdim_curved:
    output:
        part=f"{LOWDIM}/parts/curved_s{{seed}}.csv",
        grid=f"{LOWDIM}/curved_grid_s{{seed}}.csv",
    log:
        f"{LOGS}/lowdim/curved_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("lowdim"),
    # Small matrices: one BLAS thread. Measured at smoke scale on the shared 2-core machine (load ~15): 14 s CPU with
    # one thread, 85 s CPU with two (OpenBLAS threads spinning against each other). Paper scale (d = 4096) keeps the
    # configured threads (not measured).
    threads: THREADS if SCALE == "paper" else 1
    resources:
        mem_mb=4000,
        runtime=720 if SCALE == "paper" else 10,
    conda:
        ENV_NUMPY
    shell:
        "OMP_NUM_THREADS={threads} python -m repro.lowdim curved --scale {params.scale} --seed {wildcards.seed}"
        " --out {output.part} --out-grid {output.grid} > {log} 2>&1"


rule lowdim_summary:
    input:
        exact=rules.lowdim_exact.output.grid,
        curved=expand(f"{LOWDIM}/curved_grid_s{{seed}}.csv", seed=SEEDS),
    output:
        part=part_path("lowdim", "summary"),
    log:
        f"{LOGS}/lowdim/summary.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("lowdim"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_NUMPY
    shell:
        "python -m repro.lowdim summary --scale {params.scale} --exact-grid {input.exact} --curved-grid {input.curved}"
        " --out {output.part} > {log} 2>&1"


rule lowdim_figure:
    input:
        exact=rules.lowdim_exact.output.grid,
        curved=expand(f"{LOWDIM}/curved_grid_s{{seed}}.csv", seed=SEEDS),
    output:
        **figure_outputs("lowdim", "{name}"),
    log:
        f"{LOGS}/lowdim/figure_{{name}}.log",
    params:
        caption=lambda w: LOWDIM_CAPTIONS[w.name],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    wildcard_constraints:
        name="|".join(LOWDIM_CAPTIONS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.lowdim figure --name {wildcards.name} --exact-grid {input.exact}"
        " --curved-grid {input.curved} --out-stem {params.stem} > {log} 2>&1"
