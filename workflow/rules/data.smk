# Data rules: fetch registry files (mirror first, then the URL; checksums verified), prepare datasets in their
# canonical form once per machine, convert the FID Inception weights, and compute FID reference statistics.
# Everything lands under DATA_DIR (config data_dir / env REPRO_DATA_DIR) and is shared by all papers and runs.
# Source policy and paths: repro.common.data.workflow.DataLayout.
#
# Helpers for the paper rule files:
#   prepared(dataset, split="all")            -> the canonical split (cifar10/cifar100: train | test)
#   fid_stats(dataset, split, res)            -> FID statistics (mu, sigma, features) made by rule fid_stats;
#                                                split "<split>" or "<split>-n<N>" (subset(n=N, seed=0))
#   FID_EXTRACTOR, inception_weights()        -> the Inception variant in use and its weights file
#   download(key)                             -> a registry file fetched by rule fetch (e.g. "ddpm_cifar10_ema")
from repro.common.data.workflow import CIFAR_DATASETS, EXTRACTORS, FACE_DATASETS, REGISTRY_RE, VERIFIED_RE, DataLayout
from repro.common.data.imagenet_subsets import SUBSETS as IMAGENET_SUBSETS

DATA = DataLayout(data_dir=DATA_DIR, mirror=MIRROR, scale=SCALE)
prepared = DATA.prepared
fid_stats = DATA.fid_stats
download = DATA.download
inception_weights = DATA.inception_weights
FID_EXTRACTOR = DATA.fid_extractor
DATA_LOGS = f"{DATA_DIR}/logs"


rule fetch:
    output:
        f"{DATA_DIR}/downloads/{{key}}/{{filename}}",
    log:
        f"{DATA_LOGS}/fetch_{{key}}_{{filename}}.log",
    wildcard_constraints:
        key=REGISTRY_RE,
        filename=r"[^/]+",
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data fetch --entry {wildcards.key} --file '{wildcards.filename}' --out {output}"
        " > {log} 2>&1"


# Mirror files read in place are checked here, in a job of their own: a damaged file fails this job, so the prepare
# job that owns the prepared data never starts (Snakemake removes a job's old outputs only when it starts it).
rule verify_mirror:
    input:
        lambda w: DATA.mirror_files(w.rel),
    output:
        f"{DATA_DIR}/verified/{{rel}}.sha256",
    log:
        f"{DATA_LOGS}/verify_{{rel}}.log",
    wildcard_constraints:
        rel=VERIFIED_RE,
    params:
        mirror=MIRROR,
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data verify-mirror --mirror {params.mirror} --path {wildcards.rel} --out {output}"
        " > {log} 2>&1"


rule prepare_cifar:
    input:
        lambda w: DATA.cifar_input(w.dataset),
    output:
        train=f"{DATA_DIR}/prepared/{{dataset}}/train.npz",
        test=f"{DATA_DIR}/prepared/{{dataset}}/test.npz",
    log:
        f"{DATA_LOGS}/prepare_{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(CIFAR_DATASETS),
    params:
        source=lambda w: DATA.cifar_source(w.dataset),
        out_dir=lambda w, output: str(Path(output.train).parent),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-cifar --dataset {wildcards.dataset} --source {params.source}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule prepare_faces:
    input:
        lambda w: DATA.face_input(w.dataset),
    output:
        f"{DATA_DIR}/prepared/{{dataset}}/all.npz",
    log:
        f"{DATA_LOGS}/prepare_{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(FACE_DATASETS),
    params:
        src=lambda w: DATA.face_source(w.dataset),
        split=lambda w: DATA.face_split_args(w.dataset),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-images --src {params.src} --name {wildcards.dataset} --size 256"
        " {params.split} --out {output} > {log} 2>&1"


rule prepare_mri:
    input:
        DATA.mri_inputs(),
    output:
        f"{DATA_DIR}/prepared/mri/all.npz",
    log:
        f"{DATA_LOGS}/prepare_mri.log",
    params:
        src=DATA.mri_src_arg(DATA.mri_sources()),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-mri --src {params.src} --out {output} > {log} 2>&1"


rule prepare_caltech101:
    input:
        download("caltech101"),
    output:
        f"{DATA_DIR}/prepared/caltech101/all.npz",
    log:
        f"{DATA_LOGS}/prepare_caltech101.log",
    params:
        size=224,  # CLIP ViT-B/32 input size (tina's Caltech-101 config uses the ViT head)
    threads: 1
    resources:
        mem_mb=6000,
        runtime=30,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-caltech101 --src {input} --size {params.size} --out {output} > {log} 2>&1"


# Mini-ImageNet: the mirror's folder if it has one, else the registry's caches and split files (fetched, checked).
rule prepare_mini_imagenet:
    input:
        DATA.mini_imagenet_inputs(),
    output:
        train=f"{DATA_DIR}/prepared/mini_imagenet/train.npz",
        val=f"{DATA_DIR}/prepared/mini_imagenet/val.npz",
        test=f"{DATA_DIR}/prepared/mini_imagenet/test.npz",
    log:
        f"{DATA_LOGS}/prepare_mini_imagenet.log",
    params:
        out_dir=lambda w, output: str(Path(output.train).parent),
        src=lambda w, input: input[0] if len(input) == 1 else str(Path(input[0]).parent),  # the folder, either way
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-mini-imagenet --src {params.src} --size 84 --out-dir {params.out_dir}"
        " > {log} 2>&1"


rule prepare_imagenet_subset:
    input:
        lambda w: DATA.imagenet_subset_source(w.subset),
    output:
        train=f"{DATA_DIR}/prepared/{{subset}}/train.npz",
        test=f"{DATA_DIR}/prepared/{{subset}}/test.npz",
    log:
        f"{DATA_LOGS}/prepare_{{subset}}.log",
    wildcard_constraints:
        subset="|".join(IMAGENET_SUBSETS),
    params:
        out_dir=lambda w, output: str(Path(output.train).parent),
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.data prepare-imagenet-subset --subset {wildcards.subset} --src {input} --size 128"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule convert_inception_pool3:
    input:
        download("inception_v3_fid_pool3"),
    output:
        f"{DATA_DIR}/weights/inception-v3-pool3-tfidelity.pth",
    log:
        f"{DATA_LOGS}/convert_inception_pool3.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.metrics convert-inception --src {input} --out {output} > {log} 2>&1"


rule fid_stats:
    input:
        data=lambda w: prepared(w.dataset, w.split.split("-n")[0]),
        weights=lambda w: inception_weights(w.extractor),
    output:
        f"{DATA_DIR}/fid_stats/{{dataset}}_{{split}}_{{res}}_{{extractor}}.npz",
    log:
        f"{DATA_LOGS}/fid_stats_{{dataset}}_{{split}}_{{res}}_{{extractor}}.log",
    wildcard_constraints:
        dataset=REGISTRY_RE,
        split=r"[a-z]+(-n\d+)?",
        res=r"\d+",
        extractor="|".join(EXTRACTORS),
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=PLANNER.runtime("fid_stats", 240),
        gpu=1 if SCALE == "paper" else 0,  # 50k Inception passes: ~12 s on an H100, ~10 h on 2 CPU cores
    conda:
        ENV_TORCH
    shell:
        "python -m repro.common.metrics fid-stats --data {input.data} --split {wildcards.split}"
        " --res {wildcards.res} --extractor {wildcards.extractor} --weights {input.weights}"
        " --threads {threads} --out {output} > {log} 2>&1"
