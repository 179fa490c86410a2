"""Parsers on tiny archives in each original format, written by the tests."""

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from repro.common.data.formats import (read_caltech101, read_cifar_python, read_image_tree, read_mini_imagenet,
                                       safe_unpickle)
from repro.common.errors import UserError


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _cifar_rows(images):
    """The archive layout: 3072 bytes per image, the R plane then G then B, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar10(path, per_batch=4):
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": names, b"num_cases_per_batch": 4}))
        for i, b in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            imgs = _cifar_images(per_batch, i)
            labels = [(i + j) % 10 for j in range(per_batch)]
            batches[b] = (imgs, labels)
            d = {b"batch_label": b.encode(), b"labels": labels, b"data": _cifar_rows(imgs),
                 b"filenames": [f"{b}_{j}.png".encode() for j in range(per_batch)]}
            _add(tar, f"cifar-10-batches-py/{b}", pickle.dumps(d, protocol=2))
    return batches


def test_cifar10_python_archive(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-python.tar.gz")
    out = read_cifar_python(tmp_path / "cifar-10-python.tar.gz", "cifar10")
    assert set(out) == {"train", "test"}
    assert out["train"].images.shape == (20, 32, 32, 3) and out["test"].images.shape == (4, 32, 32, 3)
    assert np.array_equal(out["test"].images, batches["test_batch"][0])  # HWC and in test_batch order
    assert out["test"].labels.tolist() == batches["test_batch"][1]
    assert np.array_equal(out["train"].images[4:8], batches["data_batch_2"][0])
    assert out["train"].class_names[0] == "airplane" and out["train"].num_classes == 10
    assert out["test"].names[0] == "test_batch_0.png"


def test_cifar100_python_archive(tmp_path):
    imgs = _cifar_images(6, 3)
    fine = [0, 1, 2, 99, 5, 7]
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                        b"coarse_label_names": [b"c"] * 20}))
        for split in ("train", "test"):
            _add(tar, f"cifar-100-python/{split}", pickle.dumps(
                {b"data": _cifar_rows(imgs), b"fine_labels": fine, b"coarse_labels": [0] * 6}))
    out = read_cifar_python(tmp_path / "cifar-100-python.tar.gz", "cifar100")
    assert out["test"].labels.tolist() == fine and out["train"].num_classes == 100
    assert np.array_equal(out["train"].images, imgs)


def test_cifar_wrong_archive_is_a_clear_error(tmp_path):
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as tar:
        _add(tar, "something/else", b"x")
    with pytest.raises(UserError, match="not a cifar10 python archive"):
        read_cifar_python(tmp_path / "x.tar.gz", "cifar10")


def test_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    with pytest.raises(UserError, match="not a valid dataset pickle"):
        safe_unpickle(pickle.dumps(Evil()), "evil.pkl")
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(safe_unpickle(pickle.dumps({"a": arr}), "ok")["a"], arr)


def test_image_folder_tar_with_splits_orders_naturally(tmp_path):
    """Mirror layout: <root>/<split>/<class>/NNNN.jpg; 0002 sorts before 0010; classes alphabetical."""
    rng = np.random.default_rng(0)
    files = {}
    with tarfile.open(tmp_path / "imgs.tar", "w") as tar:
        _add(tar, "ROOT/README.md", b"readme")
        for split in ("train", "test"):
            for cls in ("zebra", "ant"):
                for k in (10, 2, 1):
                    arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                    files[(split, cls, k)] = arr
                    _add(tar, f"ROOT/{split}/{cls}/{k:04d}.png", _png(arr))
    out = read_image_tree(tmp_path / "imgs.tar", name="toy")
    t = out["test"]
    assert t.class_names == ("ant", "zebra") and t.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert t.names[:3] == ("test/ant/0001.png", "test/ant/0002.png", "test/ant/0010.png")
    assert np.array_equal(t.images[2], files[("test", "ant", 10)])


def test_image_folder_dir_and_zip_without_splits(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "faces" / "cat").mkdir(parents=True)
    (tmp_path / "faces" / "dog").mkdir()
    big = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "faces" / "cat" / "a.png")
    Image.fromarray(big[:, :40]).save(tmp_path / "faces" / "dog" / "b.png")
    out = read_image_tree(tmp_path / "faces", name="afhq", size=16, splits=False)["all"]
    assert out.images.shape == (2, 16, 16, 3) and out.class_names == ("cat", "dog")
    # centre crop: the 60-wide image is cropped to its middle 40 columns before resizing
    ref = np.asarray(Image.fromarray(big[:, 10:50]).resize((16, 16), Image.Resampling.LANCZOS))
    assert np.array_equal(out.images[0], ref)
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr("flat/x1.png", _png(big[:8, :8]))
        zf.writestr("flat/x2.png", _png(big[8:16, :8]))
    flat = read_image_tree(tmp_path / "f.zip", name="ffhq", splits=False)["all"]
    assert flat.class_names == ("ffhq",) and len(flat) == 2
    with pytest.raises(UserError, match="different sizes"):
        read_image_tree(tmp_path / "faces", name="afhq", splits=False)


def test_caltech101_skips_background_and_converts_grey(tmp_path):
    rng = np.random.default_rng(2)
    with tarfile.open(tmp_path / "101_ObjectCategories.tar.gz", "w:gz") as tar:
        _add(tar, "101_ObjectCategories/BACKGROUND_Google/image_0001.jpg", _png(rng.integers(0, 255, (9, 7, 3),
                                                                                               dtype=np.uint8)))
        _add(tar, "101_ObjectCategories/accordion/image_0001.jpg", _png(rng.integers(0, 255, (30, 20, 3),
                                                                                    dtype=np.uint8)))
        _add(tar, "101_ObjectCategories/Faces/image_0001.jpg", _png(rng.integers(0, 255, (20, 30), dtype=np.uint8)))
    with zipfile.ZipFile(tmp_path / "caltech-101.zip", "w") as zf:
        zf.write(tmp_path / "101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories.tar.gz")
    with pytest.warns(UserWarning, match="2 Caltech-101 classes"):
        out = read_caltech101(tmp_path / "caltech-101.zip", size=12)
    assert out.class_names == ("Faces", "accordion") and out.images.shape == (2, 12, 12, 3)
    assert np.array_equal(out.images[0, ..., 0], out.images[0, ..., 2])  # grey -> RGB


def test_mini_imagenet_cache_and_csv(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, (4, 84, 84, 3), dtype=np.uint8)
    cache = {"image_data": data, "class_dict": {"n02": [1, 3], "n01": [0, 2]}}
    (tmp_path / "mini-imagenet-cache-test.pkl").write_bytes(pickle.dumps(cache))
    (tmp_path / "images").mkdir()
    rows = ["filename,label"]
    for i, wnid in enumerate(["n05", "n04", "n05"]):
        Image.fromarray(rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{wnid}{i}.jpg")
        rows.append(f"{wnid}{i}.jpg,{wnid}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    out = read_mini_imagenet(tmp_path)
    assert set(out) == {"train", "test"}
    assert out["test"].class_names == ("n01", "n02") and out["test"].labels.tolist() == [0, 1, 0, 1]
    assert np.array_equal(out["test"].images, data)
    assert out["train"].images.shape == (3, 84, 84, 3) and out["train"].labels.tolist() == [1, 0, 1]
