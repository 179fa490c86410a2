# STRAINER (Vyas et al., NeurIPS 2024): learn initialisations per dataset (STRAINER encoders, MAML, a fitted
# SIREN), then fit held-out images from each of them (all methods x test images as one batched computation), for
# in-domain, out-of-domain, ablation, inverse-problem and speed experiments; then figures from the arrays.
# DAG-build helpers: repro.strainer.workflow.
from repro.strainer.workflow import CAPTIONS as STRAINER_CAPTIONS, StrainerLayout

STRAINER = StrainerLayout.from_config(
    f"{RESULTS}/strainer", paper_cfg("strainer") if "strainer" in SELECTED else None
)
STRAINER_GPU = 0 if SCALE == "smoke" else 1


register_paper(
    "strainer",
    parts=[f"{e}_s{s}" for e in STRAINER.parts for s in SEEDS],
    figures=STRAINER.figures,
)


KODAK_FILES = [f"kodim{i:02d}.png" for i in range(1, 25)]


rule strainer_prepare_kodak:
    """Kodak (paper Table 4): the 24 PNGs from the registry (fetch rule, checksum recorded on first use), centre
    crop to 512 x 512 (they are 768 x 512 or 512 x 768), one canonical file."""
    input:
        [download("kodak", f) for f in KODAK_FILES],
    output:
        prepared("kodak", "all"),
    log:
        f"{DATA_LOGS}/prepare_kodak.log",
    params:
        src=lambda w, input: str(Path(input[0]).parent),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-images --src {params.src} --name kodak --size 512 --out {output}"
        " > {log} 2>&1"


rule strainer_prepare_shapes:
    """Fig. 12's meshes (ShapeNet chairs: a category zip; the Thai statue: a PLY) as occupancy grids of the
    shape3d block's size (repro.strainer.shapes); the registry's fetch rule downloads and checks them."""
    input:
        lambda w: download(w.shape, {"shapenet_chairs": "03001627.zip",
                                     "thai_statue": "xyzrgb_statuette.ply.gz"}[w.shape]),
    output:
        prepared("{shape}", "all"),
    log:
        f"{DATA_LOGS}/prepare_{{shape}}.log",
    params:
        grid=STRAINER.shape_grid,
        n=lambda w: paper_cfg("strainer")["shape3d"]["shapes"] if w.shape == "shapenet_chairs" else 1,
    wildcard_constraints:
        shape="shapenet_chairs|thai_statue",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer prepare-shapes --src {input} --n {params.n} --grid {params.grid} --out {output}"
        " > {log} 2>&1"


rule strainer_shape3d:
    """Fig. 12: STRAINER encoder on the ShapeNet chairs, transferred to the Thai statue, against SIREN (IoU)."""
    input:
        data=[prepared(d, "all") for d in STRAINER.shapes],
    output:
        part=f"{STRAINER.root}/parts/shape3d_s{{seed}}.csv",
        arrays=f"{STRAINER.root}/arrays/shape3d_s{{seed}}.npz",
    log:
        f"{LOGS}/strainer/shape3d_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("strainer"),
        data=" ".join(f"{d}={prepared(d, 'all')}" for d in STRAINER.shapes),
    threads: 1
    resources:
        mem_mb=16000,
        runtime=PLANNER.runtime("strainer_shape3d", 30),
        gpu=STRAINER_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer shape3d --scale {params.scale} --seed {wildcards.seed} --threads {threads}"
        " --data {params.data} --out {output.part} --arrays {output.arrays} > {log} 2>&1"


rule strainer_inits:
    input:
        data=lambda w: prepared(w.dataset, "all"),
    output:
        f"{STRAINER.root}/inits/{{dataset}}_s{{seed}}.pt",
    log:
        f"{LOGS}/strainer/inits_{{dataset}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("strainer"),
    wildcard_constraints:
        dataset="|".join(STRAINER.datasets) or "none",
    threads: 1
    priority: 2  # the longest chain (inits -> fits) first, so a run does not end on one long fit
    resources:
        mem_mb=4000,
        runtime=PLANNER.runtime("strainer_inits", 10),
        gpu=STRAINER_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer inits --scale {params.scale} --seed {wildcards.seed} --threads {threads}"
        " --dataset {wildcards.dataset} --data {input.data} --out {output} > {log} 2>&1"


rule strainer_fit:
    input:
        data=lambda w: [prepared(d, "all") for d in STRAINER.data_of(w.experiment)],
        inits=lambda w: [STRAINER.inits(d, w.seed) for d in STRAINER.inits_of(w.experiment)],
    output:
        part=f"{STRAINER.root}/parts/{{experiment}}_s{{seed}}.csv",
        arrays=f"{STRAINER.root}/arrays/{{experiment}}_s{{seed}}.npz",
    log:
        f"{LOGS}/strainer/fit_{{experiment}}_s{{seed}}.log",
    params:
        scale=SCALE,
        cfg=cfg_hash("strainer"),
        kind=lambda w: STRAINER.kind(w.experiment),
        dataset=lambda w: STRAINER.data_of(w.experiment)[0],
        data=lambda w: " ".join(f"{d}={prepared(d, 'all')}" for d in STRAINER.data_of(w.experiment)),
        inits=lambda w: " ".join(f"{d}={STRAINER.inits(d, w.seed)}" for d in STRAINER.inits_of(w.experiment)),
    wildcard_constraints:
        experiment="|".join(STRAINER.experiments) or "none",
    threads: 1
    priority: 1
    resources:
        mem_mb=6000,
        runtime=PLANNER.runtime("strainer_fit", 10),
        gpu=STRAINER_GPU,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.strainer fit --scale {params.scale} --seed {wildcards.seed} --threads {threads}"
        " --experiment {params.kind} --dataset {params.dataset} --data {params.data} --inits {params.inits}"
        " --out {output.part} --arrays {output.arrays} > {log} 2>&1"


rule strainer_figure:
    input:
        arrays=[STRAINER.arrays(e, SEEDS[0]) for e in STRAINER.figure_experiments],
    output:
        **figure_outputs("strainer", "{name}"),
    log:
        f"{LOGS}/strainer/figure_{{name}}.log",
    params:
        scale=SCALE,
        caption=lambda w: STRAINER_CAPTIONS[w.name],
        stem=lambda w, output: output.pdf[: -len(".pdf")],
        arrays=" ".join(f"{e}={STRAINER.arrays(e, SEEDS[0])}" for e in STRAINER.figure_experiments),
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
