"""The 10-class ImageNet subsets of trajectory matching (MTT; used by AutoPalette Table 2): ImageNette, ImageWoof,
ImageFruit, ImageMeow, ImageSquawk, ImageYellow, at 128x128.

Class lists: indices into ImageNet-1k's 1000 classes (sorted-WordNet-id order, as torchvision's ImageNet), from
GeorgeCazenavette/mtt-distillation `utils.py` (class `Config`, commit 0c424937); the label of an image is the
position of its class in the list. MTT builds every subset from ImageNet-1k (train split for training, the 50
validation images per class for testing) and resizes to 128x128.

Sources the suite accepts (registry entries `imagenet1k`, `imagenette`, `imagewoof`):
- an ImageNet-1k folder in the mirror (`imagenet/train/<wnid>/*`, `imagenet/val/<wnid>/*`, torchvision's ImageNet
  layout; 1000 class folders): every subset, exactly as MTT;
- fast.ai's Imagenette / Imagewoof archives (downloadable): the same 10 classes, but fast.ai's own train/val
  partition (9,469 / 3,925 images for Imagenette), so test accuracies are not on MTT's 500 test images. Their
  labels are in sorted-WordNet-id order, a permutation of MTT's for ImageWoof (accuracy is unaffected).
Images are centre-cropped to a square and resized (Lanczos) to `size`, the project's canonical form; MTT resizes
the whole image to 128x128 without keeping the aspect ratio (recorded difference).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from repro.common.data.canonical import Split
from repro.common.data.formats import IMAGE_EXTS, center_crop_resize, decode_image, read_image_tree
from repro.common.errors import UserError
from repro.common.progress import progress

SUBSETS: dict[str, tuple[int, ...]] = {
    "imagenette": (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "imagewoof": (193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
    "imagefruit": (953, 954, 949, 950, 951, 957, 952, 945, 943, 948),
    "imagemeow": (281, 282, 283, 284, 285, 291, 292, 290, 289, 287),
    "imagesquawk": (84, 130, 88, 144, 145, 22, 96, 9, 100, 89),
    "imageyellow": (309, 986, 954, 951, 987, 779, 599, 291, 72, 11),
}
FASTAI_ENTRY = {"imagenette": "imagenette", "imagewoof": "imagewoof"}   # subsets with a downloadable archive
RESOLUTION = 128


def read_imagenet_subset(source: str | os.PathLike, subset: str, size: int = RESOLUTION) -> dict[str, Split]:
    """{"train", "test"} splits of `subset` from an ImageNet-1k folder or a fast.ai archive (see module doc)."""
    if subset not in SUBSETS:
        raise UserError(f"unknown ImageNet subset '{subset}'; known: {', '.join(SUBSETS)}")
    source = Path(source)
    if source.is_dir() and (source / "train").is_dir() and (source / "val").is_dir():
        return _from_imagenet_folder(source, subset, size)
    if subset not in FASTAI_ENTRY:
        raise UserError(f"{source}: {subset} needs an ImageNet-1k folder (train/<wnid>/, val/<wnid>/; 1000 class "
                        f"folders); put one at <mirror>/imagenet")
    splits = read_image_tree(source, name=subset, size=size)
    if set(splits) != {"train", "val"}:
        raise UserError(f"{source}: expected train/ and val/ folders (fast.ai layout), found {sorted(splits)}")
    out = {}
    for name, split in (("train", splits["train"]), ("test", splits["val"])):
        if split.num_classes != 10:
            raise UserError(f"{source}: {name} has {split.num_classes} classes, {subset} has 10; wrong archive?")
        out[name] = Split(images=split.images, labels=split.labels, class_names=split.class_names, name=subset,
                          split=name, names=split.names, source=source.name)
    return out


def _from_imagenet_folder(root: Path, subset: str, size: int) -> dict[str, Split]:
    wnids = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if len(wnids) != 1000:
        raise UserError(f"{root}/train has {len(wnids)} class folders, ImageNet-1k has 1000; the subset's class "
                        f"indices need the full, sorted list")
    keep = [wnids[i] for i in SUBSETS[subset]]
    out = {}
    for split, folder in (("train", "train"), ("test", "val")):
        images, labels, names = [], [], []
        for label, wnid in enumerate(keep):
            files = sorted(p for p in (root / folder / wnid).glob("*") if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise UserError(f"{root}/{folder}/{wnid}: no images (class {SUBSETS[subset][label]} of {subset})")
            for p in progress(files, desc=f"{subset} {split} {wnid}", unit="file"):
                img = center_crop_resize(decode_image(p.read_bytes(), str(p)), size)
                images.append(np.asarray(img, dtype=np.uint8))
                labels.append(label)
                names.append(f"{folder}/{wnid}/{p.name}")
        out[split] = Split(images=np.stack(images), labels=np.asarray(labels, np.int64), class_names=tuple(keep),
                           name=subset, split=split, names=tuple(names), source=f"imagenet1k:{root.name}")
    return out
