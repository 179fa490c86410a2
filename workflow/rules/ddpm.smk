# DDPM (Ho, Jain, Abbeel 2020) on CIFAR-10: Table 2's variants trained as configurations of one model, samples with
# FID/KID/IS, the full bound in bits/dim (Table 1), progressive coding (Table 4, Fig. 5), and, where config
# `released: true`, the released EMA checkpoint evaluated the same way. Config: config/ddpm.yaml.
from repro.ddpm.config import DDPMConfig
from repro.ddpm.workflow import figure_inputs as ddpm_figure_inputs, figure_labels as ddpm_figure_labels
from repro.ddpm.workflow import model_path as ddpm_model_path

DDPM = f"{RESULTS}/ddpm"
DDPM_CFG = DDPMConfig.from_block(SCALE, paper_cfg("ddpm"))
DDPM_GPU = 1 if SCALE != "smoke" else 0
DDPM_THREADS = 1 if SCALE == "smoke" else THREADS  # small CPU jobs scale poorly: run two at once instead
DDPM_EVAL = list(DDPM_CFG.eval_variants) + (["released"] if DDPM_CFG.released else [])
DDPM_BOUND = list(DDPM_CFG.bpd_variants) + (["released"] if DDPM_CFG.released else [])
DDPM_CAPTIONS = {
    "samples": "Uncurated CIFAR-10 samples of the L_simple model (ε prediction, σ² = β_t), EMA weights, "
    "ancestral sampling with x̂0 clipping.",
    "table2_samples": "Samples of every Table 2 configuration (same seed): one row per parameterisation / objective.",
    "rate_distortion": "Fig. 5 redrawn: distortion (RMSE on [0, 255]) and rate (cumulative bits/dim) against reverse "
    "steps, and distortion against rate, on CIFAR-10 test images (L_simple model).",
    "progressive_generation": "Fig. 6 redrawn: the predicted x̂0 along the reverse chain (columns: reverse step), "
    "one row per chain.",
}

register_paper(
    "ddpm",
    parts=[f"train_{v}_s{s}" for v in DDPM_CFG.train_variants for s in SEEDS]
    + [f"sample_{v}_s{s}" for v in DDPM_EVAL for s in SEEDS]
    + [f"bound_{v}_s{s}" for v in DDPM_BOUND for s in SEEDS],
    figures=list(DDPM_CAPTIONS),
)


rule ddpm_train:
    input:
        data=prepared(DDPM_CFG.dataset, "train"),
    output:
        model=f"{DDPM}/runs/{{variant}}_s{{seed}}/model.pt",
        part=f"{DDPM}/parts/train_{{variant}}_s{{seed}}.csv",
    log:
        f"{LOGS}/ddpm/train_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("ddpm"),
        ckpt=lambda w: f"{DDPM}/runs/{w.variant}_s{w.seed}/ckpt",
        launch=(f"torchrun --standalone --nproc_per_node {DDPM_CFG.train.gpus}" if DDPM_CFG.train.gpus > 1
                else "python"),
    wildcard_constraints:
        variant="|".join(DDPM_CFG.train_variants),
    threads: DDPM_THREADS
    resources:
        mem_mb=4000 if SCALE == "smoke" else 32000,
        runtime=PLANNER.runtime("ddpm_train", 30),
        gpu=max(DDPM_CFG.train.gpus, DDPM_GPU),
    conda:
        ENV_TORCH
    shell:
        "{params.launch} -m repro.ddpm train --scale {params.scale} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --threads {threads} --data {input.data} --ckpt-dir {params.ckpt}"
        " --out-model {output.model} --out {output.part} > {log} 2>&1"


rule ddpm_sample:
    input:
        model=lambda w: ddpm_model_path(w.variant, w.seed, DDPM, download("ddpm_cifar10_ema")),
        inception=inception_weights(),
        train_stats=fid_stats(DDPM_CFG.dataset, DDPM_CFG.fid.train_ref, DDPM_CFG.model.resolution),
        test_stats=fid_stats(DDPM_CFG.dataset, DDPM_CFG.fid.test_ref, DDPM_CFG.model.resolution),
    output:
        samples=f"{DDPM}/samples/{{variant}}_s{{seed}}.npz",
        part=f"{DDPM}/parts/sample_{{variant}}_s{{seed}}.csv",
    log:
        f"{LOGS}/ddpm/sample_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("ddpm"),
        extractor=FID_EXTRACTOR,
    wildcard_constraints:
        variant="|".join(DDPM_EVAL),
    threads: DDPM_THREADS
    resources:
        mem_mb=4000 if SCALE == "smoke" else 32000,
        runtime=PLANNER.runtime("ddpm_sample", 20),
        gpu=DDPM_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.ddpm sample --scale {params.scale} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --threads {threads} --model {input.model} --inception {input.inception} --extractor {params.extractor}"
        " --train-stats {input.train_stats} --test-stats {input.test_stats} --out-samples {output.samples}"
        " --out {output.part} > {log} 2>&1"


rule ddpm_bound:
    input:
        model=lambda w: ddpm_model_path(w.variant, w.seed, DDPM, download("ddpm_cifar10_ema")),
        test=prepared(DDPM_CFG.dataset, "test"),
        train=prepared(DDPM_CFG.dataset, "train"),
    output:
        curve=f"{DDPM}/bound/{{variant}}_s{{seed}}.npz",
        part=f"{DDPM}/parts/bound_{{variant}}_s{{seed}}.csv",
    log:
        f"{LOGS}/ddpm/bound_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("ddpm"),
    wildcard_constraints:
        variant="|".join(DDPM_BOUND),
    threads: DDPM_THREADS
    resources:
        mem_mb=4000 if SCALE == "smoke" else 32000,
        runtime=PLANNER.runtime("ddpm_bound", 20),
        gpu=DDPM_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.ddpm bound --scale {params.scale} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --threads {threads} --model {input.model} --test {input.test} --train {input.train}"
        " --out-curve {output.curve} --out {output.part} > {log} 2>&1"


rule ddpm_figure:
    input:
        lambda w: ddpm_figure_inputs(w.name, DDPM_CFG, DDPM, SEEDS[0]),
    output:
        **figure_outputs("ddpm", "{name}"),
    log:
        f"{LOGS}/ddpm/figure_{{name}}.log",
    params:
        caption=lambda w: DDPM_CAPTIONS[w.name],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
        labels=lambda w: ddpm_figure_labels(w.name, DDPM_CFG),
        grid=DDPM_CFG.sample.grid,
    wildcard_constraints:
        name="|".join(DDPM_CAPTIONS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.ddpm figure --name {wildcards.name} --inputs {input} --labels {params.labels}"
        " --grid {params.grid} --out-stem {params.stem} > {log} 2>&1"
