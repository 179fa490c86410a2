"""The canonical form of a prepared dataset split, shared by every paper.

One split is one `.npz` file (uncompressed, see `save_split`) at `{data_dir}/prepared/<dataset>/<split>.npz` holding

- `images`: uint8 `[N, H, W, C]` (C = 3 for colour, 1 for grey MRI slices),
- `labels`: int64 `[N]` (index into `class_names`; 0 for single-class sets),
- `class_names`: str `[K]`,
- `names`: str `[N]`, the source file (or slice) each image came from,
- `source`: a one-element str array saying which archive or folder the split was made from,

written once by a `prepare` rule (atomically) and read with `load_split`. Per-scale subsets are drawn from it
deterministically with `subset`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from repro.common.errors import UserError
from repro.common.io import save_npz

REQUIRED = ("images", "labels", "class_names")


@dataclass(frozen=True)
class Split:
    """A dataset split in canonical form (see the module docstring)."""

    images: np.ndarray       # uint8 [N, H, W, C]
    labels: np.ndarray       # int64 [N]
    class_names: tuple[str, ...]
    name: str                # dataset key, e.g. "cifar10"
    split: str               # "train", "test", "all", ...
    names: tuple[str, ...] = ()      # per-image source names ("" where unknown)
    source: str = ""                 # what it was prepared from
    index: np.ndarray | None = None  # for subsets: positions in the full split

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}/{self.split}: images must be uint8 [N,H,W,C], got "
                             f"{self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,):
            raise ValueError(f"{self.name}/{self.split}: {len(self.labels)} labels for {n} images")
        if self.names and len(self.names) != n:
            raise ValueError(f"{self.name}/{self.split}: {len(self.names)} names for {n} images")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"{self.name}/{self.split}: labels outside [0, {len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def take(self, index: np.ndarray) -> "Split":
        """The images at `index` (in that order); `index` is composed with any earlier subset's index."""
        index = np.asarray(index, dtype=np.int64)
        base = self.index if self.index is not None else np.arange(len(self))
        return replace(self, images=self.images[index], labels=self.labels[index],
                       names=tuple(self.names[i] for i in index) if self.names else (), index=base[index])


def save_split(path: str | os.PathLike, split: Split) -> None:
    """Write `split` atomically in canonical form, uncompressed: every job reading a dataset loads its whole split,
    and zlib saves little on images (CIFAR-10 train: 142 MB instead of 154) but costs 0.7 s of each load (1.0 s
    against 0.34 s, measured; a smoke DAG makes about 30 such loads). Splits written compressed read the same."""
    save_npz(path, compressed=False, images=np.ascontiguousarray(split.images), labels=split.labels.astype(np.int64),
             class_names=np.array(split.class_names, dtype=str),
             names=np.array(split.names if split.names else [""] * len(split), dtype=str),
             source=np.array([split.source], dtype=str), dataset=np.array([split.name], dtype=str),
             split=np.array([split.split], dtype=str))


def load_split(path: str | os.PathLike) -> Split:
    """Read a prepared split; a missing or malformed file raises a UserError that says how to remake it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prepared split not found; make it with the data rules "
                        f"(snakemake --cores 2 {path}) or check data_dir in config/config.yaml")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not an .npz archive (a zip of .npy arrays); delete it and re-run its prepare rule")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: unreadable ({err}); delete it and re-run its prepare rule") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UserError(f"{path}: not a prepared split (missing {missing}); delete it and re-run its prepare rule")
    parts = path.parent.name, path.stem
    names = tuple(str(s) for s in data["names"]) if "names" in data else ()
    try:
        return Split(images=data["images"], labels=data["labels"].astype(np.int64),
                     class_names=tuple(str(s) for s in data["class_names"]),
                     name=str(data["dataset"][0]) if "dataset" in data else parts[0],
                     split=str(data["split"][0]) if "split" in data else parts[1],
                     names=names if any(names) else (),
                     source=str(data["source"][0]) if "source" in data else "")
    except ValueError as err:
        raise UserError(f"{path}: {err}; delete it and re-run its prepare rule") from None


def subset_indices(labels: np.ndarray, *, n_per_class: int | None = None, n: int | None = None,
                   seed: int = 0) -> np.ndarray:
    """Deterministic subset positions, in random (seeded) order.

    `n_per_class`: that many images of every class; the result interleaves classes (position i holds class
    i mod K after a seeded shuffle of each round), so any prefix of it is near class-balanced.
    `n`: that many images uniformly without replacement.
    Subsets are nested: for one seed, the subset of size k is a prefix-per-class of the subset of size k' > k.
    """
    if (n_per_class is None) == (n is None):
        raise ValueError("give exactly one of n_per_class and n")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if n is not None:
        if not 0 <= n <= len(labels):
            raise UserError(f"subset of {n} images asked from a split of {len(labels)}; lower the subset size")
        return rng.permutation(len(labels))[:n]
    classes = np.unique(labels)
    per_class = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < n_per_class:
            raise UserError(f"class {c} has {len(idx)} images, fewer than the {n_per_class} per class asked for; "
                            "lower the per-class subset size in the paper's config")
        per_class.append(idx[rng.permutation(len(idx))[:n_per_class]])
    rounds = np.stack(per_class, axis=1)          # [n_per_class, K]: round r holds one image of every class
    order = np.argsort(rng.random(rounds.shape), axis=1)
    return np.take_along_axis(rounds, order, axis=1).reshape(-1)


def subset(split: Split, *, n_per_class: int | None = None, n: int | None = None, seed: int = 0) -> Split:
    """A deterministic subset of `split` (see `subset_indices`); `Split.index` records the positions."""
    return split.take(subset_indices(split.labels, n_per_class=n_per_class, n=n, seed=seed))
