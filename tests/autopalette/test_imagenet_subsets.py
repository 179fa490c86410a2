"""Table 2's data: the MTT ImageNet subsets through the data registry. The test writes its own archive in fast.ai's
layout and points the registry entry at it (env REPRO_REGISTRY_OVERRIDES, a file:// URL with the archive's own md5),
so the fetch -> checksum -> prepare path runs offline; and a tiny ImageNet-1k folder for the subsets that need it."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repro.common.data.cli import main as data_main
from repro.common.data.canonical import load_split
from repro.common.data.download import fetch
from repro.common.data.imagenet_subsets import SUBSETS, read_imagenet_subset
from repro.common.data.registry import OVERRIDES_ENV, REGISTRY, entry
from repro.common.data.workflow import DataLayout
from repro.common.errors import UserError

IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
                    "n03425413", "n03445777", "n03888605")


def _jpeg(colour: int, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (colour, 255 - colour, 128)).save(buf, format="JPEG")
    return buf.getvalue()


def _fastai_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", 2), ("val", 1)):
            for c, wnid in enumerate(IMAGENETTE_WNIDS):
                for i in range(n):
                    data = _jpeg(20 * c)
                    info = tarfile.TarInfo(f"imagenette2/{split}/{wnid}/{wnid}_{i}.JPEG")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path


def test_registry_entries_for_the_subsets():
    nette, woof, full = REGISTRY["imagenette"], REGISTRY["imagewoof"], REGISTRY["imagenet1k"]
    assert nette.files[0].md5 == "fe2fc210e6bb7c5664d602c3cd71e612" and nette.files[0].size == 1557161267
    assert not woof.files[0].has_checksum and woof.files[0].size == 1343715595     # size only: trust on first use
    assert full.files[0].mirror == ("imagenet",) and not full.files[0].urls          # registration needed
    assert set(SUBSETS) == {"imagenette", "imagewoof", "imagefruit", "imagemeow", "imagesquawk", "imageyellow"}
    assert all(len(v) == 10 and len(set(v)) == 10 for v in SUBSETS.values())


def test_fetch_verifies_the_archive_and_prepare_makes_the_splits(tmp_path, monkeypatch):
    archive = _fastai_archive(tmp_path / "served.tgz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(f"imagenette: {{urls: ['{archive.as_uri()}'], md5: {md5}}}\n")
    monkeypatch.setenv(OVERRIDES_ENV, str(overrides))
    dest = tmp_path / "downloads" / "imagenette" / "imagenette2.tgz"
    fetch(entry("imagenette").files[0], dest)
    assert dest.read_bytes() == archive.read_bytes()
    out = tmp_path / "prepared" / "imagenette"
    data_main(["prepare-imagenet-subset", "--subset", "imagenette", "--src", str(dest), "--size", "16",
               "--out-dir", str(out)])
    train, test = load_split(out / "train.npz"), load_split(out / "test.npz")
    assert train.images.shape == (20, 16, 16, 3) and test.images.shape == (10, 16, 16, 3)
    assert train.class_names == IMAGENETTE_WNIDS and np.bincount(train.labels).tolist() == [2] * 10
    # the label follows the class folder: class c was drawn with red = 20 c
    assert abs(int(train.images[train.labels == 3][..., 0].mean()) - 60) <= 3


def test_a_wrong_checksum_stops_the_fetch_and_leaves_nothing(tmp_path, monkeypatch):
    archive = _fastai_archive(tmp_path / "served.tgz")
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(f"imagenette: {{urls: ['{archive.as_uri()}'], md5: {'0' * 32}}}\n")
    monkeypatch.setenv(OVERRIDES_ENV, str(overrides))
    dest = tmp_path / "downloads" / "imagenette2.tgz"
    with pytest.raises(UserError, match="md5"):
        fetch(entry("imagenette").files[0], dest, retries=1)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))


def test_subsets_from_an_imagenet_folder_use_mtt_class_order(tmp_path):
    root = tmp_path / "imagenet"
    wnids = [f"n{i:08d}" for i in range(1000)]                  # sorted: folder i is ImageNet class i
    for split in ("train", "val"):
        for w in wnids:
            (root / split / w).mkdir(parents=True)
    for label, cls in enumerate(SUBSETS["imagesquawk"]):
        for split in ("train", "val"):
            (root / split / wnids[cls] / "a.JPEG").write_bytes(_jpeg(label * 20))
    out = read_imagenet_subset(root, "imagesquawk", size=8)
    assert out["train"].class_names == tuple(wnids[c] for c in SUBSETS["imagesquawk"])
    assert out["test"].labels.tolist() == list(range(10))
    assert out["train"].images.shape == (10, 8, 8, 3)
    with pytest.raises(UserError, match="ImageNet-1k folder"):
        read_imagenet_subset(_fastai_archive(tmp_path / "a.tgz"), "imagefruit")


def test_source_policy(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    layout = DataLayout("data", str(mirror), "paper")
    assert layout.imagenet_subset_source("imagenette") == "data/downloads/imagenette/imagenette2.tgz"
    assert layout.imagenet_subset_source("imagemeow") == str(mirror / "imagenet")
    (mirror / "imagenet").mkdir()
    assert layout.imagenet_subset_source("imagewoof") == str((mirror / "imagenet").resolve())
