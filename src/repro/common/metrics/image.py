"""PSNR and SSIM on images in [0, 1] (torch tensors or numpy arrays, channels last or first, batched).

PSNR = 10 log10(1 / MSE) with peak 1, per image, as STRAINER's reproductions compute it after mapping outputs
back to [0, 1] (strainer sheet, "Pixel range / PSNR"). SSIM follows Wang et al. 2004: 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, population (not sample) covariances, mean over the valid region
and channels -- the settings of `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)` and of the original MATLAB code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

Array = torch.Tensor | np.ndarray


def _as_nchw(x: Array, channels_last: bool) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x).to(torch.float64)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t.permute(2, 0, 1)[None] if channels_last else t[None]
    elif t.ndim == 4:
        t = t.permute(0, 3, 1, 2) if channels_last else t
    else:
        raise ValueError(f"expected an image [H, W], [H, W, C] or a batch [N, H, W, C]; got shape {tuple(t.shape)}")
    return t


def mse(x: Array, y: Array, *, channels_last: bool = True) -> torch.Tensor:
    a, b = _as_nchw(x, channels_last), _as_nchw(y, channels_last)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return ((a - b) ** 2).flatten(1).mean(dim=1)


def psnr(x: Array, y: Array, *, data_range: float = 1.0, channels_last: bool = True) -> torch.Tensor:
    """PSNR in dB of each image pair ([N] tensor; inf where the images are equal)."""
    return 10.0 * torch.log10(data_range**2 / mse(x, y, channels_last=channels_last))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Array, y: Array, *, data_range: float = 1.0, channels_last: bool = True, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of each image pair ([N] tensor), computed per channel on the valid (unpadded) region."""
    a, b = _as_nchw(x, channels_last), _as_nchw(y, channels_last)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    n, c, h, w = a.shape
    if min(h, w) < win_size:
        raise ValueError(f"images of {h}x{w} are smaller than the {win_size}x{win_size} SSIM window")
    win = _gaussian_window(win_size, sigma).to(a)[None, None].expand(c, 1, win_size, win_size)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


def psnr_from_mse(m: float, data_range: float = 1.0) -> float:
    return math.inf if m == 0 else 10.0 * math.log10(data_range**2 / m)
