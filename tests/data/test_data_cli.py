"""The data CLI end to end on tiny inputs (the DAG runs the same commands)."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from repro.common.data import load_split
from repro.common.data.cli import main
from repro.common.errors import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_folder_tar(path, per_class=2, size=32):
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            for cls in CLASSES:
                for k in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
                    info = tarfile.TarInfo(f"CIFAR-10-images/{split}/{cls}/{k:04d}.png")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def test_prepare_cifar_from_image_folder_tar(tmp_path):
    write_folder_tar(tmp_path / "c.tar")
    sha = hashlib.sha256((tmp_path / "c.tar").read_bytes()).hexdigest()
    main(["prepare-cifar", "--dataset", "cifar10", "--source", str(tmp_path / "c.tar"), "--sha256", sha,
          "--out-dir", str(tmp_path / "prepared" / "cifar10")])
    test = load_split(tmp_path / "prepared" / "cifar10" / "test.npz")
    assert test.images.shape == (20, 32, 32, 3) and test.class_names == CLASSES
    assert test.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert (test.name, test.split) == ("cifar10", "test")
    with pytest.raises(UserError, match="sha256"):
        main(["prepare-cifar", "--dataset", "cifar10", "--source", str(tmp_path / "c.tar"), "--sha256", "0" * 64,
              "--out-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_prepare_cifar_rejects_wrong_classes_or_size(tmp_path):
    write_folder_tar(tmp_path / "c.tar", size=16)
    with pytest.raises(UserError, match="32x32"):
        main(["prepare-cifar", "--dataset", "cifar10", "--source", str(tmp_path / "c.tar"),
              "--out-dir", str(tmp_path / "o")])


def test_prepare_images_keeps_names_and_split(tmp_path):
    for split in ("train", "val"):
        for cls in ("female", "male"):
            (tmp_path / "celeba_hq" / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((40, 30, 3), 100, np.uint8)).save(tmp_path / "celeba_hq" / split / cls / "1.jpg")
    main(["prepare-images", "--src", str(tmp_path / "celeba_hq"), "--name", "celebahq", "--size", "16",
          "--split", "val", "--out", str(tmp_path / "all.npz")])
    s = load_split(tmp_path / "all.npz")
    assert s.images.shape == (2, 16, 16, 3) and s.names == ("val/female/1.jpg", "val/male/1.jpg")
    with pytest.raises(UserError, match="no split folder 'test'"):
        main(["prepare-images", "--src", str(tmp_path / "celeba_hq"), "--name", "celebahq", "--split", "test",
              "--out", str(tmp_path / "t.npz")])
