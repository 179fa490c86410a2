# AutoPalette (Yuan et al., NeurIPS 2024): colour-reduced dataset distillation on trajectory matching.
# experts (shared per dataset and scale) -> graph-cut selection rankings -> one job per run (build or distil the set,
# evaluate it, write its metrics part) -> figures. The runs and the table cells they fill are in config/autopalette.yaml.
AP = "autopalette"
AP_DIR = f"{RESULTS}/{AP}"
AP_CFG = paper_cfg(AP) if AP in SELECTED else None
AP_RUNS = dict(AP_CFG["runs"]) if AP_CFG else {}
AP_GPU = 1 if SCALE == "paper" else 0
AP_THREADS = 1 if SCALE == "smoke" else THREADS  # smoke: two single-thread jobs at once on 2 cores
AP_CAPTIONS = {
    "palettes": "AutoPalette distilled images (top) after hard colour assignment, with the palette each one is "
    "stored with (bottom).",
    "accuracy_vs_colours": "Test accuracy of nets trained on the distilled set against the number of colours K "
    "(our Table 7 runs, mean ± std over evaluation nets), beside the paper's Table 7.",
}

register_paper(
    AP,
    parts=[f"{run}-s{seed}" for run in AP_RUNS for seed in SEEDS],
    figures=list(AP_CAPTIONS),
)


def ap_data(dataset, split):
    """The prepared split from the data rules (their `prepared` helper where it is defined)."""
    if "prepared" in globals():
        return prepared(dataset, split)
    return f"{DATA_DIR}/prepared/{dataset}/{split}.npz"


def ap_experts(dataset):
    n = AP_CFG["experts"]["num_experts"]
    return [f"{AP_DIR}/experts/{dataset}/expert_{i}.pt" for i in range(n)]


def ap_run_inputs(w):
    run = AP_RUNS[w.ap_run]
    inputs = {"train": ap_data(run["dataset"], "train"), "test": ap_data(run["dataset"], "test")}
    if run["method"] in ("mtt", "autopalette"):
        inputs["experts"] = ap_experts(run["dataset"])
    init = run.get("init", "random_real")
    if init != "random_real":
        colors = run.get("n_colors", 256) if init == "graphcut_quantized" else 256
        inputs["selection"] = f"{AP_DIR}/selection/{run['dataset']}_k{colors}.npz"
    return inputs


wildcard_constraints:
    ap_run="|".join(AP_RUNS) or "none",


rule autopalette_expert:
    input:
        train=lambda w: ap_data(w.dataset, "train"),
    output:
        f"{AP_DIR}/experts/{{dataset}}/expert_{{index}}.pt",
    log:
        f"{LOGS}/{AP}/expert_{{dataset}}_{{index}}.log",
    params:
        scale=SCALE,
        cfg=lambda w: cfg_hash(AP),
    wildcard_constraints:
        index=r"\d+",
    threads: AP_THREADS
    resources:
        mem_mb=3000,
        runtime=600 if SCALE == "paper" else 10,
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette expert --scale {params.scale} --threads {threads} --dataset {wildcards.dataset}"
        " --index {wildcards.index} --train {input.train} --out {output} > {log} 2>&1"


rule autopalette_select:
    input:
        train=lambda w: ap_data(w.dataset, "train"),
    output:
        f"{AP_DIR}/selection/{{dataset}}_k{{colors}}.npz",
    log:
        f"{LOGS}/{AP}/select_{{dataset}}_k{{colors}}.log",
    params:
        scale=SCALE,
        cfg=lambda w: cfg_hash(AP),
    wildcard_constraints:
        colors=r"\d+",
    threads: AP_THREADS
    resources:
        mem_mb=4000,
        runtime=240 if SCALE == "paper" else 10,
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette select --scale {params.scale} --threads {threads} --dataset {wildcards.dataset}"
        " --colors {wildcards.colors} --train {input.train} --out {output} > {log} 2>&1"


rule autopalette_run:
    input:
        unpack(ap_run_inputs),
    output:
        part=part_path(AP, "{ap_run}-s{seed}"),
        stored=f"{AP_DIR}/sets/{{ap_run}}-s{{seed}}.npz",
    log:
        f"{LOGS}/{AP}/run_{{ap_run}}-s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=lambda w: cfg_hash(AP),
        experts=lambda w, input: f"--experts {' '.join(input.experts)}" if "experts" in input.keys() else "",
        selection=lambda w, input: f"--selection {input.selection}" if "selection" in input.keys() else "",
    threads: AP_THREADS
    resources:
        mem_mb=6000,
        runtime=1440 if SCALE == "paper" else 15,
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette run --scale {params.scale} --threads {threads} --run {wildcards.ap_run}"
        " --seed {wildcards.seed} --train {input.train} --test {input.test} {params.experts} {params.selection}"
        " --out-set {output.stored} --out {output.part} > {log} 2>&1"


def ap_colour_parts(w):
    return [part_path(AP, f"{run}-s{seed}") for run, spec in AP_RUNS.items() for seed in SEEDS
            if any(o["table"] == "table7" for o in spec["outputs"])]


rule autopalette_figure_palettes:
    input:
        stored=lambda w: f"{AP_DIR}/sets/{AP_CFG['figure_run']}-s{SEEDS[0]}.npz",
        names=lambda w: ap_data(AP_RUNS[AP_CFG["figure_run"]]["dataset"], "test"),
    output:
        **figure_outputs(AP, "palettes"),
    log:
        f"{LOGS}/{AP}/figure_palettes.log",
    params:
        scale=SCALE,
        caption=AP_CAPTIONS["palettes"],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.autopalette figure --name palettes --scale {params.scale} --set {input.stored}"
        " --class-names {input.names} --out-stem {params.stem} > {log} 2>&1"


rule autopalette_figure_colours:
    input:
        parts=ap_colour_parts,
        claims="config/claims/autopalette.yaml",
    output:
        **figure_outputs(AP, "accuracy_vs_colours"),
    log:
        f"{LOGS}/{AP}/figure_accuracy_vs_colours.log",
    params:
        scale=SCALE,
        caption=AP_CAPTIONS["accuracy_vs_colours"],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_REPORT
    shell:
        "python -m repro.autopalette figure --name accuracy_vs_colours --scale {params.scale} --parts {input.parts}"
        " --out-stem {params.stem} > {log} 2>&1"
