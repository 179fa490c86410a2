"""Parsers that turn a dataset in its distributed format into canonical `Split`s.

Supported formats (each is tested on a tiny archive in that format written by the test itself):

- CIFAR-10 / CIFAR-100 "python version" archives (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`): pickled
  dicts of `data` (N x 3072 uint8, channel-major 32x32 planes) and labels, as documented on
  https://www.cs.toronto.edu/~kriz/cifar.html. Unpickled with an allow-list (no arbitrary code).
- Image folders, as a directory or a tar archive: `[<split>/]<class>/<file>.{jpg,png,...}` (one subfolder per class,
  like torchvision's ImageFolder), e.g. the mirror's `cifar10-jpeg.tar`.
- Caltech-101 (`101_ObjectCategories/<class>/image_NNNN.jpg`, in the `.tar.gz` that `caltech-101.zip` holds);
  `BACKGROUND_Google` is not a class and is skipped, as torchvision's `Caltech101` does.
- Mini-ImageNet: either the pickled caches `mini-imagenet-cache-{train,val,test}.pkl` (`image_data` N x 84 x 84 x 3,
  `class_dict` wnid -> indices), checked against the Ravi & Larochelle split files `{train,val,test}.csv`
  (`filename,label`) where those are beside them, or the split files beside an `images/` folder.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from repro.common.data.canonical import Split
from repro.common.errors import UserError
from repro.common.progress import progress

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------------
# Safe unpickling of the CIFAR / Mini-ImageNet pickles
# ---------------------------------------------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickle plain containers and numpy arrays only; anything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")
        return super().find_class(module, name)


def safe_unpickle(data: bytes, what: str):
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise UserError(f"{what}: not a valid dataset pickle ({err}); the archive is corrupt or of another "
                        "format: delete it and download it again") from None


def _str_keys(d: dict) -> dict:
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 python archives
# ---------------------------------------------------------------------------------------------------------------

CIFAR_LAYOUT = {
    # dataset: (folder in the archive, {split: [batch files]}, meta file, label key, class-name key)
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta", "fine_labels",
                 "fine_label_names"),
}


def read_cifar_python(archive: str | os.PathLike, dataset: str) -> dict[str, Split]:
    """Both splits of a CIFAR python archive, in the archive's own order (test = `test_batch` order)."""
    if dataset not in CIFAR_LAYOUT:
        raise ValueError(f"unknown CIFAR variant {dataset!r}; expected one of {sorted(CIFAR_LAYOUT)}")
    folder, batches, meta_name, label_key, names_key = CIFAR_LAYOUT[dataset]
    wanted = {f"{folder}/{b}" for files in batches.values() for b in files} | {f"{folder}/{meta_name}"}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.name in wanted:
                    blobs[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{archive}: cannot read the {dataset} archive ({err}); delete it and fetch it again") from None
    missing = sorted(wanted - set(blobs))
    if missing:
        raise UserError(f"{archive}: not a {dataset} python archive (missing {missing[:3]}); "
                        f"use the official '{folder}' tar.gz")
    meta = _str_keys(safe_unpickle(blobs[f"{folder}/{meta_name}"], f"{archive}:{meta_name}"))
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
    out = {}
    for split, files in batches.items():
        images, labels, names = [], [], []
        for b in files:
            d = _str_keys(safe_unpickle(blobs[f"{folder}/{b}"], f"{archive}:{b}"))
            data = np.asarray(d["data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(d[label_key], dtype=np.int64))
            names += [n.decode() if isinstance(n, bytes) else str(n) for n in d.get("filenames", [b""] * len(data))]
        out[split] = Split(images=np.ascontiguousarray(np.concatenate(images)), labels=np.concatenate(labels),
                           class_names=class_names, name=dataset, split=split, names=tuple(names),
                           source=Path(archive).name)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Image folders (directory, tar or zip) and image decoding
# ---------------------------------------------------------------------------------------------------------------


def iter_files(source: str | os.PathLike, *, desc: str = "reading") -> Iterator[tuple[str, bytes]]:
    """(relative posix path, bytes) of every regular file in a directory, tar or zip archive, in stored order."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file())
        for p in progress(paths, desc=desc, unit="file"):
            yield p.relative_to(source).as_posix(), p.read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in progress(zf.infolist(), desc=desc, unit="file"):
                if not info.is_dir():
                    yield info.filename, zf.read(info)
    elif source.is_file():
        try:
            with tarfile.open(source, "r|*") as tar:  # streaming: one sequential pass over the archive
                for member in progress(tar, desc=desc, unit="file"):
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()
        except (tarfile.TarError, EOFError) as err:
            raise UserError(f"{source}: cannot read the archive ({err}); check the file (sha256sum) "
                            "and fetch it again") from None
    else:
        raise UserError(f"{source}: no such directory or archive; check the mirror setting (config 'mirror' or "
                        "env REPRO_MIRROR) and the dataset's path")


def decode_image(data: bytes, what: str, mode: str = "RGB") -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"{what}: not a readable image ({err}); remove or replace that file") from None
    return img.convert(mode) if img.mode != mode else img


def center_crop_resize(img: Image.Image, size: int | None) -> Image.Image:
    """Crop the largest centred square, then resize to `size` x `size` with a Lanczos (antialiased) filter."""
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def read_image_tree(source: str | os.PathLike, *, name: str, size: int | None = None, splits: bool = True,
                    skip_classes: tuple[str, ...] = (), mode: str = "RGB") -> dict[str, Split]:
    """Read `[<root>/][<split>/]<class>/<file>` images from a directory, tar or zip.

    The common leading folder of all image paths (such as `CIFAR-10-images/`) is dropped. With `splits`, the first
    remaining folder names the split and the second the class; without it, the first names the class and the
    split is `all`. Images directly in the root form one class named after `name`. Classes are sorted by name
    (CIFAR-10's label order is alphabetical, so this gives its official label ids); images within a class are
    in natural order of file name (`0002.jpg` before `0010.jpg`), which for the mirror's CIFAR-10 test folder is
    the order of the original `test_batch`. Images of unequal size need `size` (centre crop + resize).
    """
    entries: list[tuple[tuple[str, ...], bytes]] = []
    for rel, data in iter_files(source, desc=f"reading {name}"):
        parts = PurePosixPath(rel).parts
        if parts and parts[-1].lower().endswith(IMAGE_EXTS) and not any(p.startswith(".") for p in parts):
            entries.append((parts, data))
    if not entries:
        raise UserError(f"{source}: no images found ({', '.join(IMAGE_EXTS)}); is this the right folder/archive?")
    common = 0
    while all(len(p) > common + 1 for p, _ in entries) and len({p[common] for p, _ in entries}) == 1:
        common += 1
    grouped: dict[str, dict[str, list[tuple[str, bytes]]]] = {}
    for parts, data in entries:
        rest = parts[common:]
        if splits and len(rest) < 3:
            raise UserError(f"{source}: '{'/'.join(parts)}' is not under <split>/<class>/; "
                            "lay the folder out as train/<class>/..., test/<class>/...")
        split, rest = (rest[0], rest[1:]) if splits else ("all", rest)
        cls = rest[0] if len(rest) >= 2 else name  # an image directly in the root: one class named `name`
        if cls in skip_classes:
            continue
        grouped.setdefault(split, {}).setdefault(cls, []).append(("/".join(parts[common:]), data))
    out = {}
    for split, classes in sorted(grouped.items()):
        class_names = tuple(sorted(classes))
        images, labels, names = [], [], []
        for label, cls in enumerate(class_names):
            for rel, data in sorted(classes[cls], key=lambda e: _natural_key(e[0])):
                img = decode_image(data, f"{source}:{rel}", mode)
                if size is not None:
                    img = center_crop_resize(img, size)
                arr = np.asarray(img, dtype=np.uint8)
                images.append(arr[..., None] if arr.ndim == 2 else arr)
                labels.append(label)
                names.append(rel)
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            raise UserError(f"{source}: images of {split} have different sizes {sorted(shapes)[:3]}...; "
                            "prepare them with a target size (--size)")
        out[split] = Split(images=np.stack(images), labels=np.asarray(labels, dtype=np.int64),
                           class_names=class_names, name=name, split=split, names=tuple(names),
                           source=Path(source).name)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Caltech-101
# ---------------------------------------------------------------------------------------------------------------


def read_caltech101(source: str | os.PathLike, *, size: int) -> Split:
    """All Caltech-101 images as one split (`all`), centre-cropped and resized to `size`; 101 classes.

    `source` is `101_ObjectCategories.tar.gz`, the `caltech-101.zip` that wraps it, or an extracted folder.
    Grey images are converted to RGB. There is no official train/test split; papers draw one per class.
    """
    source = Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            inner = [n for n in zf.namelist() if n.endswith("101_ObjectCategories.tar.gz")]
            if not inner:
                raise UserError(f"{source}: no 101_ObjectCategories.tar.gz inside; is this caltech-101.zip?")
            tmp = source.with_name(f".{source.name}.101_ObjectCategories.tar.gz")
            tmp.write_bytes(zf.read(inner[0]))
        try:
            return read_caltech101(tmp, size=size)
        finally:
            tmp.unlink(missing_ok=True)
    split = read_image_tree(source, name="caltech101", size=size, splits=False,
                            skip_classes=("BACKGROUND_Google",))["all"]
    if split.num_classes != 101:
        import warnings

        warnings.warn(f"{source}: {split.num_classes} Caltech-101 classes found, expected 101", stacklevel=2)
    return split


# ---------------------------------------------------------------------------------------------------------------
# Mini-ImageNet
# ---------------------------------------------------------------------------------------------------------------

MINI_SPLITS = ("train", "val", "test")


def read_mini_imagenet(source: str | os.PathLike, *, size: int = 84) -> dict[str, Split]:
    """Mini-ImageNet's three class-disjoint splits (64 / 16 / 20 classes, 600 images each).

    `source` is a directory holding the pickled caches `mini-imagenet-cache-<split>.pkl` (the registry's download;
    learn2learn's name `...-validation.pkl` is accepted for val), or the Ravi & Larochelle split files
    `<split>.csv` plus `images/` (images are resized to `size` x `size` with a centre crop). Where a cache and its
    split file are both there, the cache is checked against the split file: the same class wnids and the same
    number of images per class (the caches have no published checksum; the split files do).
    Class names are the ImageNet wnids, sorted.
    """
    source = Path(source)
    if not source.is_dir():
        raise UserError(f"{source}: expected a Mini-ImageNet directory (pickled caches or split CSVs + images/)")
    out = {}
    for s in MINI_SPLITS:
        names = (f"mini-imagenet-cache-{s}.pkl",) + (("mini-imagenet-cache-validation.pkl",) if s == "val" else ())
        pkl = next((source / n for n in names if (source / n).is_file()), None)
        csv_path = source / f"{s}.csv"
        if pkl is not None:
            out[s] = _mini_from_cache(pkl, s)
            if csv_path.is_file():
                _check_against_split_file(out[s], csv_path)
        elif csv_path.is_file():
            out[s] = _mini_from_csv(csv_path, source / "images", s, size)
    if not out:
        raise UserError(f"{source}: found neither mini-imagenet-cache-<split>.pkl nor <split>.csv + images/")
    return out


def _split_file_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != ["filename", "label"]:
            raise UserError(f"{path}: header {reader.fieldnames}, expected filename,label (a Ravi & Larochelle split "
                            "file); fetch it again")
        return [(r["filename"], r["label"]) for r in reader]


def _check_against_split_file(split: Split, path: Path) -> None:
    """The cache holds the split file's classes with as many images each; else one line saying what differs."""
    from collections import Counter

    want = Counter(label for _, label in _split_file_rows(path))
    have = Counter(split.class_names[i] for i in split.labels.tolist())
    if have != want:
        extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        counts = sorted(c for c in set(have) & set(want) if have[c] != want[c])
        raise UserError(f"{split.source}: does not match the {split.split} split file {path.name} (classes not in "
                        f"it: {extra[:3]}, missing: {missing[:3]}, other image counts: {counts[:3]}); the cache is "
                        "corrupt or of another split: delete it and fetch it again")
    if split.images.shape[1:] != (84, 84, 3):
        raise UserError(f"{split.source}: images are {split.images.shape[1:]}, expected 84x84x3 (Mini-ImageNet)")


def _mini_from_cache(path: Path, split: str) -> Split:
    d = _str_keys(safe_unpickle(path.read_bytes(), str(path)))
    data = np.asarray(d["image_data"], dtype=np.uint8)
    class_dict = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in d["class_dict"].items()}
    class_names = tuple(sorted(class_dict))
    labels = np.full(len(data), -1, dtype=np.int64)
    for label, wnid in enumerate(class_names):
        labels[np.asarray(class_dict[wnid], dtype=np.int64)] = label
    if (labels < 0).any():
        raise UserError(f"{path}: {int((labels < 0).sum())} images belong to no class in class_dict; file corrupt")
    return Split(images=data, labels=labels, class_names=class_names, name="mini_imagenet", split=split,
                 source=path.name)


def _mini_from_csv(path: Path, image_dir: Path, split: str, size: int) -> Split:
    rows = _split_file_rows(path)
    class_names = tuple(sorted({label for _, label in rows}))
    index = {c: i for i, c in enumerate(class_names)}
    images = []
    for fname, _ in progress(rows, desc=f"mini-imagenet {split}", unit="img"):
        f = image_dir / fname
        if not f.is_file():
            raise UserError(f"{f}: listed in {path.name} but missing; re-extract the images archive")
        images.append(np.asarray(center_crop_resize(decode_image(f.read_bytes(), str(f)), size), dtype=np.uint8))
    return Split(images=np.stack(images), labels=np.asarray([index[label] for _, label in rows], dtype=np.int64),
                 class_names=class_names, name="mini_imagenet", split=split,
                 names=tuple(f for f, _ in rows), source=path.name)
