# STRAINER (Vyas et al., NeurIPS 2024): learn initialisations per dataset (STRAINER encoders, MAML, a fitted
# SIREN), then fit held-out images from each of them (all methods x test images as one batched computation), for
# in-domain, out-of-domain, ablation, inverse-problem and speed experiments; then figures from the arrays.
STRAINER = f"{RESULTS}/strainer"
STRAINER_CFG = paper_cfg("strainer") if "strainer" in SELECTED else None
STRAINER_DATASETS = list(STRAINER_CFG["data"]["datasets"]) if STRAINER_CFG else []
STRAINER_SOURCE = STRAINER_CFG["data"]["source"] if STRAINER_CFG else None
STRAINER_OOD = list(STRAINER_CFG["data"]["ood_targets"]) if STRAINER_CFG else []
STRAINER_EXPERIMENTS = [f"in_domain_{d}" for d in STRAINER_DATASETS] + (["ood"] if STRAINER_OOD else []) + [
    "ablation", "inverse", "speed"]
STRAINER_CAPTIONS = {
    "curves_id": "PSNR against test-time iterations for in-domain fitting (the paper's Fig. 2 setting): SIREN from "
    "its standard initialisation, SIREN fine-tuned from a fit of another image, a MAML initialisation, and STRAINER "
    "encoders learned from 1 and 10 training images with fresh heads; mean over the test images, band +-1 std.",
    "curves_ood": "Out-of-domain fitting (Table 2 setting): initialisations learned on the source dataset, fitted "
    "to the test images of other datasets; mean +-1 std over test images.",
    "reconstructions": "Ground truth and each method's reconstruction of held-out test images, early in the fit "
    "and at the end (PSNR in the titles).",
    "ablation": "Ablations: number of shared encoder layers in STRAINER (left, the paper's Fig. 7) and number of "
    "training images (right); SIREN for reference.",
    "inverse": "Inverse problems (Table 6): super-resolution from a box-downsampled image and denoising, SIREN "
    "against STRAINER; PSNR against the clean image per iteration and the final reconstructions.",
}


def strainer_inits(dataset, seed):
    return f"{STRAINER}/inits/{dataset}_s{seed}.pt"


def strainer_experiment_data(experiment):
    """Datasets an experiment reads: the in-domain dataset, or the source (+ out-of-domain targets)."""
    if experiment.startswith("in_domain_"):
        return [experiment[len("in_domain_"):]]
    return [STRAINER_SOURCE] + (STRAINER_OOD if experiment == "ood" else [])


register_paper(
    "strainer",
    parts=[f"{e}_s{s}" for e in STRAINER_EXPERIMENTS for s in SEEDS],
    figures=list(STRAINER_CAPTIONS),
)


rule strainer_inits:
    input:
        data=lambda w: prepared(w.dataset, "all"),
    output:
        f"{STRAINER}/inits/{{dataset}}_s{{seed}}.pt",
    log:
        f"{LOGS}/strainer/inits_{{dataset}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("strainer"),
    wildcard_constraints:
        dataset="|".join(STRAINER_DATASETS) or "none",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10 if SCALE == "smoke" else 90,
        gpu=0 if SCALE == "smoke" else 1,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer inits --scale {params.scale} --seed {wildcards.seed} --threads {threads}"
        " --dataset {wildcards.dataset} --data {input.data} --out {output} > {log} 2>&1"


rule strainer_fit:
    input:
        data=lambda w: [prepared(d, "all") for d in strainer_experiment_data(w.experiment)],
        inits=lambda w: strainer_inits(strainer_experiment_data(w.experiment)[0], w.seed),
        all_inits=lambda w: [strainer_inits(d, w.seed) for d in STRAINER_DATASETS] if w.experiment == "speed" else [],
    output:
        part=f"{STRAINER}/parts/{{experiment}}_s{{seed}}.csv",
        arrays=f"{STRAINER}/arrays/{{experiment}}_s{{seed}}.npz",
    log:
        f"{LOGS}/strainer/fit_{{experiment}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("strainer"),
        kind=lambda w: "in_domain" if w.experiment.startswith("in_domain_") else w.experiment,
        dataset=lambda w: f"--dataset {strainer_experiment_data(w.experiment)[0]}",
        data=lambda w: " ".join(f"{d}={prepared(d, 'all')}" for d in strainer_experiment_data(w.experiment)),
        inits=lambda w: " ".join(f"{d}={strainer_inits(d, w.seed)}" for d in (
            STRAINER_DATASETS if w.experiment == "speed" else strainer_experiment_data(w.experiment)[:1])),
    wildcard_constraints:
        experiment="|".join(STRAINER_EXPERIMENTS) or "none",
    threads: 1
    resources:
        mem_mb=6000,
        runtime=10 if SCALE == "smoke" else 90,
        gpu=0 if SCALE == "smoke" else 1,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer fit --scale {params.scale} --seed {wildcards.seed} --threads {threads}"
        " --experiment {params.kind} {params.dataset} --data {params.data} --inits {params.inits}"
        " --out {output.part} --arrays {output.arrays} > {log} 2>&1"


rule strainer_figure:
    input:
        arrays=[f"{STRAINER}/arrays/{e}_s{SEEDS[0]}.npz" for e in STRAINER_EXPERIMENTS if e != "speed"],
    output:
        **figure_outputs("strainer", "{name}"),
    log:
        f"{LOGS}/strainer/figure_{{name}}.log",
    params:
        scale=SCALE,
        caption=lambda w: STRAINER_CAPTIONS[w.name],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
        arrays=" ".join(f"{e}={STRAINER}/arrays/{e}_s{SEEDS[0]}.npz" for e in STRAINER_EXPERIMENTS if e != "speed"),
    wildcard_constraints:
        name="|".join(STRAINER_CAPTIONS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.strainer figures --scale {params.scale} --arrays {params.arrays}"
        " --out {wildcards.name}={params.stem} > {log} 2>&1"
