"""Real images for AutoPalette: prepared splits, class-balanced subsets, normalisation and optional ZCA.

Networks see *normalised* images, (x/255 - mean) / std per channel (MTT's CIFAR constants), or, with ZCA on,
ZCA-whitened raw pixels, as the official MTT/AutoPalette code (`utils_baseline.get_dataset`: with `--zca` the
transform is ToTensor() only, then kornia `ZCAWhitening(eps=0.1)` is fitted on the [0, 1] training images and
applied to train and test). Synthetic images are initialised from, learned in, quantised in (AutoPalette's palette
net works on the whitened images) and evaluated in that network space, as floats. `to_uint8` renders them as 8-bit
pixels (inverse ZCA, clipped) for figures; a palette image in ZCA space has K distinct *whitened* colours, which
the inverse ZCA (a map of the whole image) does not keep per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from repro.common.data import Split, subset_indices
from repro.common.data import load_split as _shared_load
from repro.common.errors import UserError

# Channel statistics used by the MTT / AutoPalette code (utils.py `get_dataset`).
CHANNEL_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    **{name: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))           # MTT utils.py: ImageNet's statistics
       for name in ("imagenette", "imagewoof", "imagefruit", "imagemeow", "imagesquawk", "imageyellow")},
}


def load_split(path: str | Path) -> Split:
    """A prepared split (`{data_dir}/prepared/<dataset>/<split>.npz`, made by the shared data rules)."""
    split = _shared_load(path)
    if split.images.shape[-1] != 3:
        raise UserError(f"{path}: AutoPalette needs colour images [N, H, W, 3], got {split.images.shape}")
    return split


def balanced_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` random images of every class (all indices when `per_class` is None)."""
    if per_class is None:
        return np.arange(len(labels))
    return np.sort(subset_indices(labels, n_per_class=per_class, seed=seed))


@dataclass
class Preprocess:
    """uint8 pixels <-> network-space tensors (per-channel normalisation, or ZCA whitening of [0, 1] pixels)."""

    mean: Tensor                 # [3]
    std: Tensor                  # [3]
    zca_matrix: Tensor | None = None   # [D, D], symmetric
    zca_inverse: Tensor | None = None  # [D, D]
    zca_mean: Tensor | None = None     # [D]

    @staticmethod
    def for_dataset(name: str, train_images: np.ndarray, zca: bool, zca_eps: float, device) -> "Preprocess":
        if zca:
            pre = Preprocess(torch.zeros(3, device=device), torch.ones(3, device=device))
            pre.fit_zca(pre.to_net(train_images, device), zca_eps)
            return pre
        if name in CHANNEL_STATS:
            mean, std = (torch.tensor(v, device=device) for v in CHANNEL_STATS[name])
        else:
            x = torch.from_numpy(train_images).float().div_(255)
            mean, std = x.mean((0, 1, 2)).to(device), x.std((0, 1, 2)).to(device)
        return Preprocess(mean, std)

    def to_net(self, images: np.ndarray, device) -> Tensor:
        """uint8 [N, H, W, 3] -> network-space float [N, 3, H, W] on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
        x = (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        if self.zca_matrix is None:
            return x
        return ((x.flatten(1) - self.zca_mean) @ self.zca_matrix).view_as(x)

    def to_uint8(self, x: Tensor) -> np.ndarray:
        """Network-space float [N, 3, H, W] -> uint8 [N, H, W, 3] (inverse ZCA if on; clipped and rounded)."""
        x = x.detach()
        if self.zca_matrix is not None:
            x = (x.flatten(1) @ self.zca_inverse + self.zca_mean).view_as(x)
        pix = x * self.std.view(1, 3, 1, 1) + self.mean.view(1, 3, 1, 1)
        return (pix.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def fit_zca(self, x: Tensor, eps: float) -> None:
        """ZCA whitening as kornia's ZCAWhitening(eps) used by the official code: mean over images, unbiased
        covariance C = U diag(S) U^T, W = U diag(1 / sqrt(S + eps)) U^T, z = (x - mean) W; W^-1 = U diag(sqrt(S +
        eps)) U^T. Fitted in float64."""
        flat = x.flatten(1).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / max(1, flat.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0)
        w = evecs @ torch.diag(1.0 / torch.sqrt(evals + eps)) @ evecs.T
        inv = evecs @ torch.diag(torch.sqrt(evals + eps)) @ evecs.T
        self.zca_matrix, self.zca_inverse, self.zca_mean = w.float(), inv.float(), mean.float()

    def net_input(self, x: Tensor) -> Tensor:
        """What a network consumes from a network-space image: the image itself (kept as the one place to change
        should a fixed input map be wanted again)."""
        return x
