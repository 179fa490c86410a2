"""Images as INR targets: resize to the experiment's resolution, scale to the configured pixel range, flatten to
[N, P, C].

Prepared datasets (uint8 [N, 256, 256, C] plus names, one canonical file per dataset made by the data rules) are
resized further here, as the paper's code does: the first author's example resizes every image to 178 x 178 with
`skimage.transform.resize` (sheet section 2, "Image resolution"), i.e. bilinear with an anti-aliasing pre-filter
when shrinking, which `F.interpolate(..., mode="bilinear", antialias=True)` matches. Targets are scaled to
`data.pixel_range` of config/strainer.yaml: [-1, 1] as in SIREN's image experiments and the [REPA] reproduction
(`Normalize(0.5, 0.5)`), or [0, 1] (learnit; alpine's unpublished .npy files, range unknown). The choice is
evidence-based (see the config's comments). PSNR is always measured on [0, 1] with peak 1 (sheet section 2,
"Pixel range / PSNR"), so the range changes the optimisation, never the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.common.errors import UserError

# ITU-R BT.601 luma, the usual RGB -> gray weights (PIL's "L" mode uses the same).
LUMA = (0.299, 0.587, 0.114)
SPLIT_SEED = 20240909  # fixed: the test images are the same for every run seed
PM1 = (-1.0, 1.0)  # the default pixel range of targets and network outputs

Range = tuple[float, float]


def check_range(value_range) -> Range:
    lo, hi = (float(v) for v in value_range)
    if (lo, hi) not in {(-1.0, 1.0), (0.0, 1.0)}:
        raise ValueError(f"pixel range must be [-1, 1] or [0, 1], got [{lo:g}, {hi:g}]")
    return lo, hi


@dataclass(frozen=True)
class ImageSet:
    """Images of one dataset at one resolution: `targets` [N, R*R, C] in `value_range`, with their names."""

    name: str
    targets: Tensor
    names: list[str]
    resolution: int
    value_range: Range = PM1

    @property
    def channels(self) -> int:
        return int(self.targets.shape[-1])

    def subset(self, index) -> "ImageSet":
        idx = list(index)
        return ImageSet(self.name, self.targets[idx], [self.names[i] for i in idx], self.resolution, self.value_range)


def load_prepared(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """uint8 images [N, H, W, C] and names from a prepared dataset file."""
    from repro.common.data import load_split

    split = load_split(path)
    images = split.images
    names = [str(n) for n in split.names] if split.names else [f"{i}" for i in range(len(images))]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"{path}: expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}; "
                        f"re-run the dataset's prepare rule")
    return images, names


def to_targets(images: np.ndarray, resolution: int, *, gray: bool = False, value_range: Range = PM1) -> Tensor:
    """uint8 [N, H, W, C] -> float32 [N, R*R, C'] in `value_range` (C' = 1 if `gray`, else C)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if gray and x.shape[1] == 3:
        x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    lo, hi = check_range(value_range)
    x = x.clamp(0, 1) * (hi - lo) + lo
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], resolution * resolution, x.shape[1]).contiguous()


def load_image_set(path: str | Path, name: str, resolution: int, *, gray: bool = False,
                   value_range: Range = PM1) -> ImageSet:
    images, names = load_prepared(path)
    return ImageSet(name, to_targets(images, resolution, gray=gray, value_range=value_range), names, resolution,
                    check_range(value_range))


def coord_grid(resolution: int, device=None) -> Tensor:
    """Pixel-centre coordinates [R*R, 2] on a linspace(-1, 1) grid per axis, row-major (sheet section 1,
    "Coordinates": alpine's `get_coords_spatial`)."""
    axis = torch.linspace(-1, 1, resolution, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([yy, xx], dim=-1).reshape(-1, 2)


@dataclass(frozen=True)
class Split:
    """Which images of a dataset are held out for test-time fitting and which may train an initialisation."""

    train: list[int]
    test: list[int]


def split_indices(n: int, n_test: int, n_train_needed: int, dataset: str) -> Split:
    """A fixed held-out test set of `n_test` images drawn by a seeded permutation (so that it spreads over the
    classes of a class-sorted file such as AFHQ's cat/dog/wild), the rest, in file order, as the training pool.
    The split does not depend on the run's seed: every seed fits the same test images."""
    if n < n_test + n_train_needed:
        raise UserError(f"dataset '{dataset}' has {n} images but the strainer config needs {n_test} test + "
                        f"{n_train_needed} training images; lower data.n_test / train.images in "
                        f"config/strainer.yaml or prepare more images")
    test = sorted(int(i) for i in np.random.default_rng(SPLIT_SEED).permutation(n)[:n_test])
    return Split(train=[i for i in range(n) if i not in set(test)], test=test)


def to_image(flat: Tensor, resolution: int, value_range: Range = PM1) -> np.ndarray:
    """[..., R*R, C] in `value_range` -> float [..., R, R, C] in [0, 1] (figures, SSIM)."""
    lo, hi = check_range(value_range)
    x = (flat.detach().float().cpu().clamp(lo, hi) - lo) / (hi - lo)
    return x.reshape(*flat.shape[:-2], resolution, resolution, flat.shape[-1]).numpy()
