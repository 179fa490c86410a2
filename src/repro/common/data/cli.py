"""`python -m repro.common.data <command>`: fetch registry files and prepare datasets in canonical form.

Commands (each writes its outputs atomically; see `workflow/rules/data.smk` for the rules that call them):

  list                  print the registry
  fetch                 one registry file -> --out (mirror, package, then URLs; checksum verified)
  verify-mirror         a mirror file or folder read in place -> --out stamp (its verified sha256 lines)
  prepare-cifar         CIFAR-10/100 python archive, or an image-folder tar/dir -> --out-dir/{train,test}.npz
  prepare-images        image folder / tar / zip (class per subfolder) -> one split (centre crop + resize)
  prepare-mri           the mirror's MRI files (or neurite-oasis 2D tar) -> uint8 [N, 256, 256, 1]
  prepare-caltech101    caltech-101.zip / 101_ObjectCategories.tar.gz -> all.npz
  prepare-mini-imagenet Mini-ImageNet folder -> --out-dir/{train,val,test}.npz
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from repro.common.data.canonical import Split, save_split
from repro.common.data.download import fetch, mirror_dir
from repro.common.data.registry import REGISTRY, entry
from repro.common.errors import UserError

log = logging.getLogger("repro.common.data")


def _summary(split: Split) -> str:
    return (f"{split.name}/{split.split}: {len(split)} images {tuple(split.images.shape[1:])}, "
            f"{split.num_classes} classes, from {split.source}")


def _save(path: str | Path, split: Split) -> None:
    save_split(path, split)
    log.info("wrote %s (%s)", path, _summary(split))


def cmd_list(args: argparse.Namespace) -> None:
    for e in REGISTRY.values():
        print(f"{e.key:24s} {e.kind:8s} {e.description}")
        for f in e.files + e.alternatives:
            where = list(f.urls) + [f"<mirror>/{m}" for m in f.mirror] + (
                [f"package {f.package[0]}/{f.package[1]}"] if f.package else [])
            print(f"    {f.filename}: {', '.join(where)}")


def cmd_fetch(args: argparse.Namespace) -> None:
    e = entry(args.entry)
    rf = e.file(args.file) if args.file else e.files[0]
    fetch(rf, args.out, mirror=mirror_dir(args.mirror))
    log.info("fetched %s:%s -> %s", e.key, rf.filename, args.out)


def cmd_verify_mirror(args: argparse.Namespace) -> None:
    from repro.common.data.verify import MANIFEST, verify_mirror_path
    from repro.common.io import atomic_path

    mirror = Path(args.mirror) if args.mirror else mirror_dir()
    if mirror is None:
        raise UserError("verify-mirror: no mirror given; pass --mirror or set REPRO_MIRROR")
    lines = verify_mirror_path(mirror, args.path, args.manifest or MANIFEST)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("".join(f"{line}\n" for line in lines))
    log.info("verified %d file(s) of %s against %s", len(lines), Path(mirror) / args.path, args.manifest or MANIFEST)


def cmd_prepare_cifar(args: argparse.Namespace) -> None:
    from repro.common.data.formats import read_cifar_python, read_image_tree

    t0 = time.perf_counter()
    src = Path(args.source)
    if args.sha256:
        _verify_sha256(src, args.sha256)
    if src.name.endswith((".tar.gz", ".tgz")) and "python" in src.name:
        splits = read_cifar_python(src, args.dataset)
    else:
        splits = read_image_tree(src, name=args.dataset, splits=True)
        if args.dataset == "cifar10":
            _check_cifar10_folder(splits)
    missing = {"train", "test"} - set(splits)
    if missing:
        raise UserError(f"{src}: no {sorted(missing)} split found; expected train/ and test/ folders")
    out = Path(args.out_dir)
    for name in ("train", "test"):
        _save(out / f"{name}.npz", splits[name])
    log.info("prepared %s from %s in %.1f s", args.dataset, src, time.perf_counter() - t0)


def _verify_sha256(path: Path, expected: str) -> None:
    from repro.common.data.download import digest

    if not path.is_file():
        raise UserError(f"{path}: not found; check the mirror setting (config 'mirror' or env REPRO_MIRROR)")
    actual = digest(path).sha256
    if actual != expected.lower():
        raise UserError(f"{path}: sha256 {actual}, expected {expected}; the file is corrupt or another version: "
                        "replace it with the mirror's copy (see its SHA256SUMS)")


def _check_cifar10_folder(splits: dict[str, Split]) -> None:
    expected = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    for s in splits.values():
        if s.class_names != expected:
            raise UserError(f"{s.source}: CIFAR-10 class folders {s.class_names} differ from the official "
                            f"{expected}; labels would not match the official ids")
        if s.resolution != 32:
            raise UserError(f"{s.source}: CIFAR-10 images are {s.images.shape[1:3]}, expected 32x32")


def cmd_prepare_images(args: argparse.Namespace) -> None:
    from repro.common.data.formats import read_image_tree

    if args.split:
        splits = read_image_tree(args.src, name=args.name, size=args.size, splits=True)
        if args.split not in splits:
            raise UserError(f"{args.src}: no split folder '{args.split}' (found {sorted(splits)})")
        split = splits[args.split]
    else:
        split = read_image_tree(args.src, name=args.name, size=args.size, splits=False)["all"]
    _save(args.out, split)


def cmd_prepare_mri(args: argparse.Namespace) -> None:
    from repro.common.data.mri import read_mri_slices, read_neurite_oasis

    src = Path(args.src)
    split = read_mri_slices(src) if src.is_dir() else read_neurite_oasis(src, limit=args.limit)
    _save(args.out, split)


def cmd_prepare_caltech(args: argparse.Namespace) -> None:
    from repro.common.data.formats import read_caltech101

    _save(args.out, read_caltech101(args.src, size=args.size))


def cmd_prepare_mini(args: argparse.Namespace) -> None:
    from repro.common.data.formats import read_mini_imagenet

    for name, split in read_mini_imagenet(args.src, size=args.size).items():
        _save(Path(args.out_dir) / f"{name}.npz", split)


def cmd_prepare_imagenet_subset(args: argparse.Namespace) -> None:
    from repro.common.data.imagenet_subsets import read_imagenet_subset

    for name, split in read_imagenet_subset(args.src, args.subset, size=args.size).items():
        _save(Path(args.out_dir) / f"{name}.npz", split)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.common.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="print the registry").set_defaults(fn=cmd_list)

    f = sub.add_parser("fetch", help="fetch one registry file (mirror, package, URL; verified)")
    f.add_argument("--entry", required=True, choices=sorted(REGISTRY))
    f.add_argument("--file", help="file name within the entry (default: its first file)")
    f.add_argument("--out", required=True)
    f.add_argument("--mirror", help="mirror directory (default: env REPRO_MIRROR)")
    f.set_defaults(fn=cmd_fetch)

    v = sub.add_parser("verify-mirror", help="check a mirror file/folder against the checksum manifest")
    v.add_argument("--path", required=True, help="path inside the mirror (e.g. faces/celebahq, cifar10-jpeg.tar)")
    v.add_argument("--mirror", help="mirror directory (default: env REPRO_MIRROR)")
    v.add_argument("--manifest", help="sha256sum-format manifest (default: repro/common/data/mirror.sha256)")
    v.add_argument("--out", required=True, help="stamp: the verified sha256sum lines")
    v.set_defaults(fn=cmd_verify_mirror)

    c = sub.add_parser("prepare-cifar", help="CIFAR archive or image folder -> train/test npz")
    c.add_argument("--dataset", required=True, choices=["cifar10", "cifar100"])
    c.add_argument("--source", required=True, help="cifar-*-python.tar.gz, or an image-folder tar/directory")
    c.add_argument("--sha256", help="verify the source file against this SHA-256 first")
    c.add_argument("--out-dir", required=True)
    c.set_defaults(fn=cmd_prepare_cifar)

    i = sub.add_parser("prepare-images", help="image folder/tar/zip -> one split")
    i.add_argument("--src", required=True)
    i.add_argument("--name", required=True, help="dataset key stored in the file (e.g. celebahq)")
    i.add_argument("--size", type=int, default=256, help="centre crop to a square, Lanczos resize to this size")
    i.add_argument("--split", help="the source is laid out <split>/<class>/...: keep this split (e.g. val)")
    i.add_argument("--out", required=True)
    i.set_defaults(fn=cmd_prepare_images)

    m = sub.add_parser("prepare-mri", help="MRI slices -> uint8 [N, 256, 256, 1]")
    m.add_argument("--src", required=True, help="the mirror's mri/ folder, or neurite-oasis.2d.v1.0.tar")
    m.add_argument("--limit", type=int, default=None, help="neurite-oasis: first N subjects only")
    m.add_argument("--out", required=True)
    m.set_defaults(fn=cmd_prepare_mri)

    k = sub.add_parser("prepare-caltech101", help="Caltech-101 -> all.npz")
    k.add_argument("--src", required=True)
    k.add_argument("--size", type=int, default=224)
    k.add_argument("--out", required=True)
    k.set_defaults(fn=cmd_prepare_caltech)

    n = sub.add_parser("prepare-mini-imagenet", help="Mini-ImageNet -> train/val/test npz")
    n.add_argument("--src", required=True)
    n.add_argument("--size", type=int, default=84)
    n.add_argument("--out-dir", required=True)
    n.set_defaults(fn=cmd_prepare_mini)

    s = sub.add_parser("prepare-imagenet-subset", help="an MTT ImageNet subset -> train/test npz")
    s.add_argument("--subset", required=True, help="imagenette, imagewoof, imagefruit, imagemeow, imagesquawk, "
                   "imageyellow")
    s.add_argument("--src", required=True, help="an ImageNet-1k folder (train/, val/) or a fast.ai archive")
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(fn=cmd_prepare_imagenet_subset)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)

