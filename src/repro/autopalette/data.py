"""Real images for AutoPalette: prepared splits, class-balanced subsets, normalisation and optional ZCA.

Networks see *normalised* images, (x/255 - mean) / std per channel (MTT's CIFAR constants). Synthetic images
live in that space too; a per-channel affine map keeps the number of distinct colours, so colour-reduced images
stay colour-reduced when stored as uint8. ZCA whitening, when on, is applied after quantisation as a fixed linear
map (`Preprocess.net_input`) rather than baked into the stored images as in the MTT code, so that a stored image
has exactly K colours.
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
    """uint8 <-> normalised tensors, and the optional ZCA map applied right before a network."""

    mean: Tensor                 # [3]
    std: Tensor                  # [3]
    zca_matrix: Tensor | None = None   # [D, D]
    zca_mean: Tensor | None = None     # [D]

    @staticmethod
    def for_dataset(name: str, train_images: np.ndarray, zca: bool, zca_eps: float, device) -> "Preprocess":
        if name in CHANNEL_STATS:
            mean, std = (torch.tensor(v, device=device) for v in CHANNEL_STATS[name])
        else:
            x = torch.from_numpy(train_images).float().div_(255)
            mean, std = x.mean((0, 1, 2)).to(device), x.std((0, 1, 2)).to(device)
        pre = Preprocess(mean, std)
        if zca:
            pre.fit_zca(pre.to_net(train_images, device), zca_eps)
        return pre

    def to_net(self, images: np.ndarray, device) -> Tensor:
        """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W] on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)

    def to_uint8(self, x: Tensor) -> np.ndarray:
        """Normalised float [N, 3, H, W] -> uint8 [N, H, W, 3] (clipped and rounded: 8 bits per channel)."""
        pix = x.detach() * self.std.view(1, 3, 1, 1) + self.mean.view(1, 3, 1, 1)
        return (pix.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def fit_zca(self, x: Tensor, eps: float) -> None:
        """ZCA whitening with eigenvalue regulariser `eps` (kornia ZCAWhitening(eps=0.1) in the MTT code)."""
        flat = x.flatten(1).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / max(1, flat.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        w = evecs @ torch.diag(1.0 / torch.sqrt(evals.clamp_min(0) + eps)) @ evecs.T
        self.zca_matrix, self.zca_mean = w.float(), mean.float()

    def net_input(self, x: Tensor) -> Tensor:
        """What a network consumes: the normalised image, ZCA-whitened if ZCA is on."""
        if self.zca_matrix is None:
            return x
        return ((x.flatten(1) - self.zca_mean) @ self.zca_matrix).view_as(x)
