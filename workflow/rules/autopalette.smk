# AutoPalette (Yuan et al., NeurIPS 2024): colour-reduced dataset distillation on trajectory matching.
from repro.autopalette import rules as ap_rules

# experts (shared per dataset and scale) -> graph-cut selection rankings -> one job per run (build or distil the set,
# evaluate it, write its metrics part) -> figures. The runs and the table cells they fill are in config/autopalette.yaml.
AP = "autopalette"
AP_DIR = f"{RESULTS}/{AP}"
AP_CFG = paper_cfg(AP) if AP in SELECTED else None
AP_RUNS = {name: run for name, run in (AP_CFG["runs"] if AP_CFG else {}).items()
           if ap_rules.plannable(name, run, DATA.imagenet_subset_source, prepared)}
AP_GPU = 0 if SCALE == "smoke" else 1  # mid and paper run on a GPU
AP_THREADS = 1 if SCALE == "smoke" else THREADS  # smoke: two single-thread jobs at once on 2 cores
AP_EXPERTS = AP_CFG["experts"]["num_experts"] if AP_CFG else 0
AP_PREPARED = prepared  # the data rules' path of a prepared split
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


wildcard_constraints:
    ap_run="|".join(AP_RUNS) or "none",


rule autopalette_expert:
    input:
        train=lambda w: AP_PREPARED(w.dataset, "train"),
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
        mem_mb=8000 if SCALE == "paper" else 3000,
        runtime=PLANNER.runtime("autopalette_expert", 10),
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette expert --scale {params.scale} --threads {threads} --dataset {wildcards.dataset}"
        " --index {wildcards.index} --train {input.train} --out {output} > {log} 2>&1"


rule autopalette_select:
    input:
        train=lambda w: AP_PREPARED(w.dataset, "train"),
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
        mem_mb=16000 if SCALE == "paper" else 4000,
        runtime=PLANNER.runtime("autopalette_select", 10),
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette select --scale {params.scale} --threads {threads} --dataset {wildcards.dataset}"
        " --colors {wildcards.colors} --train {input.train} --out {output} > {log} 2>&1"


rule autopalette_run:
    input:
        unpack(lambda w: ap_rules.run_inputs(AP_RUNS[w.ap_run], AP_DIR, AP_EXPERTS, AP_PREPARED)),
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
        mem_mb=48000 if SCALE == "paper" else 6000,  # paper: 100 expert files are read (about 13 GB)
        runtime=PLANNER.runtime("autopalette_run", 15),
        gpu=AP_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.autopalette run --scale {params.scale} --threads {threads} --run {wildcards.ap_run}"
        " --seed {wildcards.seed} --train {input.train} --test {input.test} {params.experts} {params.selection}"
        " --out-set {output.stored} --out {output.part} > {log} 2>&1"


rule autopalette_figure_palettes:
    input:
        stored=lambda w: f"{AP_DIR}/sets/{AP_CFG['figure_run']}-s{SEEDS[0]}.npz",
        names=lambda w: AP_PREPARED(AP_RUNS[AP_CFG["figure_run"]]["dataset"], "test"),
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
        parts=lambda w: ap_rules.parts_with_table(AP_RUNS, SEEDS, "table7", lambda p: part_path(AP, p)),
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
