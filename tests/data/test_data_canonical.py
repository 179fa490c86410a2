import numpy as np
import pytest

from repro.common.data import Split, load_split, save_split, subset, subset_indices
from repro.common.errors import UserError


def make_split(n_per_class=6, classes=3, size=4):
    labels = np.repeat(np.arange(classes), n_per_class)
    images = (np.arange(len(labels))[:, None, None, None] * np.ones((1, size, size, 3))).astype(np.uint8)
    return Split(images=images, labels=labels.astype(np.int64), class_names=tuple(f"c{i}" for i in range(classes)),
                 name="toy", split="train", names=tuple(f"f{i}.png" for i in range(len(labels))), source="unit")


def test_roundtrip(tmp_path):
    s = make_split()
    save_split(tmp_path / "toy" / "train.npz", s)
    t = load_split(tmp_path / "toy" / "train.npz")
    assert np.array_equal(t.images, s.images) and np.array_equal(t.labels, s.labels)
    assert t.class_names == s.class_names and t.names == s.names
    assert (t.name, t.split, t.source) == ("toy", "train", "unit")
    assert t.labels.dtype == np.int64 and t.images.dtype == np.uint8


def test_splits_are_stored_uncompressed_and_compressed_ones_still_read(tmp_path):
    import zipfile

    s = make_split()
    save_split(tmp_path / "train.npz", s)
    with zipfile.ZipFile(tmp_path / "train.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}   # a load is a copy, not an inflate
    with np.load(tmp_path / "train.npz") as z:   # a split made before (compressed) holds the same and reads the same
        np.savez_compressed(tmp_path / "old.npz", **{k: z[k] for k in z.files})
    old, new = load_split(tmp_path / "old.npz"), load_split(tmp_path / "train.npz")
    assert np.array_equal(old.images, new.images) and np.array_equal(old.labels, new.labels)
    assert (old.class_names, old.names, old.source) == (new.class_names, new.names, new.source)


def test_missing_and_malformed_files_say_how_to_fix(tmp_path):
    with pytest.raises(UserError, match="prepare|snakemake"):
        load_split(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="missing"):
        load_split(tmp_path / "bad.npz")


def test_split_validates():
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int64), ("a",), "x", "y")
    with pytest.raises(ValueError, match="labels"):
        Split(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), ("a",), "x", "y")


def test_subset_per_class_is_balanced_deterministic_and_nested():
    s = make_split(n_per_class=10, classes=4)
    a = subset(s, n_per_class=3, seed=7)
    b = subset(s, n_per_class=3, seed=7)
    assert np.array_equal(a.index, b.index)
    assert np.bincount(a.labels, minlength=4).tolist() == [3, 3, 3, 3]
    # images follow their index (composition with the stored positions)
    assert np.array_equal(a.images[:, 0, 0, 0], a.index.astype(np.uint8))
    big = subset(s, n_per_class=5, seed=7)
    for c in range(4):  # nested per class
        assert set(a.index[a.labels == c]) <= set(big.index[big.labels == c])
    # every round of K consecutive positions holds one image of each class
    assert all(sorted(a.labels[i:i + 4]) == [0, 1, 2, 3] for i in range(0, 12, 4))
    assert not np.array_equal(subset(s, n_per_class=3, seed=8).index, a.index)


def test_subset_n_uniform_and_errors():
    s = make_split(n_per_class=10, classes=4)
    idx = subset_indices(s.labels, n=20, seed=0)
    assert len(set(idx)) == 20 and np.array_equal(idx, subset_indices(s.labels, n=20, seed=0))
    nested = subset(subset(s, n=20, seed=0), n=5, seed=1)
    assert set(nested.index) <= set(idx)
    with pytest.raises(UserError):
        subset(s, n_per_class=11)
    with pytest.raises(UserError):
        subset(s, n=41)
    with pytest.raises(ValueError):
        subset_indices(s.labels, n=2, n_per_class=2)
