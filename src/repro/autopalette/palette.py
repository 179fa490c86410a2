"""The palette network, colour quantisation, its three auxiliary losses, Median Cut, and storage accounting.

References are to the AutoPalette paper (Yuan et al., NeurIPS 2024) and the fact sheet
`../shared/papers/autopalette.md` (section 1).

Shapes: images x [N, C, H, W]; assignment probabilities m [N, K, H, W] (softmax over K at every pixel);
palettes [N, K, C] (one palette per image, Eq. 4).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn


class PaletteNet(nn.Module):
    """Palette network (App. A.2): 1x1 conv C->hidden, ReLU, 1x1 conv hidden->K without bias, softmax over K.

    Hidden width 256 in the code (`ColorCNN.color_mask`). A 1x1 convolution is a linear map of each pixel's colour,
    so it is computed as `nn.Linear` on channels-last pixels, which is several times faster than `conv2d` on CPU.
    """

    def __init__(self, n_colors: int, channels: int = 3, hidden: int = 256):
        super().__init__()
        if n_colors < 2:
            raise ValueError(f"a palette needs at least 2 colours, got {n_colors}")
        self.n_colors = n_colors
        self.net = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, n_colors, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel probabilities over the K palette entries, [N, K, H, W]."""
        return torch.softmax(self.net(x.permute(0, 2, 3, 1)), dim=-1).permute(0, 3, 1, 2)


def soft_quantize(x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """Training-time colour reduction: palette = m-weighted mean colour per bucket (Eq. 4), pixel = sum_k m_k p_k.

    Returns (image [N, C, H, W], palette [N, K, C]); differentiable in x and m.
    """
    mf, xf = m.flatten(2), x.flatten(2)                                  # [N, K, P], [N, C, P]
    palette = torch.bmm(mf, xf.transpose(1, 2)) / mf.sum(2, keepdim=True).clamp_min(1e-8)
    image = torch.bmm(palette.transpose(1, 2), mf).view_as(x)
    return image, palette


def hard_assign(m: Tensor) -> Tensor:
    """Storage-time assignment: the most probable bucket per pixel (Eq. 5), [N, H, W] int64."""
    return m.argmax(1)


def hard_quantize(x: Tensor, index: Tensor, n_colors: int) -> tuple[Tensor, Tensor]:
    """Image and palette from a hard assignment: each bucket's colour is the mean of its pixels (0 if empty)."""
    onehot = torch.nn.functional.one_hot(index.flatten(1), n_colors).transpose(1, 2).to(x.dtype)   # [N, K, P]
    palette = torch.bmm(onehot, x.flatten(2).transpose(1, 2)) / onehot.sum(2, keepdim=True).clamp_min(1.0)
    image = torch.bmm(palette.transpose(1, 2), onehot).view_as(x)
    return image, palette


# -- auxiliary losses on the palette network (Eq. 6, 7, 12) ---------------------------------------------------------

def max_colour_loss(m: Tensor) -> Tensor:
    """L_m (Eq. 6): minus the mean over images and buckets of the largest probability any pixel gives the bucket.

    It is -1 when every bucket is chosen with certainty by at least one pixel and -1/K for uniform m.
    """
    return -m.flatten(2).amax(2).mean()


def palette_balance_loss(m: Tensor) -> Tensor:
    """L_b (Eq. 7): minus the entropy of the image's average bucket usage, averaged over images.

    -log K when all buckets are used equally, 0 when the whole image falls in one bucket.
    """
    usage = m.mean(dim=(2, 3))                                            # [N, K]
    entropy = -(usage * torch.log(usage.clamp_min(1e-12))).sum(1)
    return -entropy.mean()


def alignment_loss(m: Tensor, target: Tensor, sample_ratio: float = 0.3, generator: torch.Generator | None = None
                   ) -> Tensor:
    """L_a (Eq. 12): align the pixel self-similarity of the palette net's assignment with Median Cut's.

    `target` [N, H, W] holds the Median-Cut bucket of each pixel. As the official `PixelSimLoss(sample_ratio=0.3)`
    (KeViNYuAn0314/AutoPalette, distill/color_networks/color_cnn_plus.py, commit 4b74b140): every image draws its
    own S = floor(H * W * sample_ratio) pixels without replacement (307 at 32x32); A = M^T M [S, S] for the soft
    assignment and for the one-hot target, both L2-normalised along one axis (A is symmetric, so which axis does not
    change the loss); the loss is the mean over images of ||A_soft - A_target||_F^2 / S. (Dividing by S^2, the mean
    over entries, would make it S times weaker.) It is invariant to how buckets are numbered, since only "same
    bucket or not" enters A.
    """
    n, k, h, w = m.shape
    p = h * w
    count = int(p * sample_ratio)
    if count < 2:
        raise ValueError(f"alignment loss: sample_ratio {sample_ratio} of {p} pixels leaves {count} (< 2) pixels")
    idx = torch.rand(n, p, generator=generator).argsort(dim=1)[:, :count].to(m.device)   # per image, no repeats
    ms = torch.gather(m.flatten(2), 2, idx.unsqueeze(1).expand(n, k, count))              # [N, K, S]
    t = torch.gather(target.flatten(1), 1, idx)                                           # [N, S]
    a_soft = torch.bmm(ms.transpose(1, 2), ms)                                            # [N, S, S]
    a_target = (t.unsqueeze(2) == t.unsqueeze(1)).to(m.dtype)     # one-hot^T one-hot, without building it
    a_soft = nn.functional.normalize(a_soft, dim=1)
    a_target = nn.functional.normalize(a_target, dim=1)
    return ((a_soft - a_target).pow(2).sum((1, 2)) / count).mean()


# -- Median Cut (PIL), the classical quantiser the alignment loss and the initialisation use ----------------------

def median_cut(images: np.ndarray, n_colors: int, method: str = "median_cut") -> tuple[np.ndarray, np.ndarray]:
    """Median-Cut quantise uint8 images [N, H, W, 3] to `n_colors` (PIL `quantize(method=MEDIANCUT)`, as the code);
    `method` "octree": PIL's Fast Octree instead (Table 8's other classical quantiser).

    Returns (index maps [N, H, W] uint8, quantised images [N, H, W, 3] uint8).
    """
    pil_method = {"median_cut": Image.Quantize.MEDIANCUT, "octree": Image.Quantize.FASTOCTREE}[method]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"median_cut expects uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    index = np.empty(images.shape[:3], np.uint8)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        q = Image.fromarray(img).quantize(colors=n_colors, method=pil_method)
        index[i] = np.asarray(q)
        out[i] = np.asarray(q.convert("RGB"))
    return index, out


# -- storage accounting (section 3.6) -----------------------------------------------------------------------------

def bits_per_pixel(n_colors: int) -> int:
    """Bits of the per-pixel palette index for K colours: ceil(log2 K) (8 for 256, 6 for 64)."""
    if n_colors < 2 or n_colors > 256:
        raise ValueError(f"n_colors must be in [2, 256], got {n_colors}")
    return math.ceil(math.log2(n_colors))


def images_per_class(ipc: int, n_colors: int) -> int:
    """Images per class the paper stores in the budget of `ipc` 8-bit images at K colours: ipc * 2**(8 - ceil(log2 K)).

    This is the paper's accounting (section 3.6) and the code's (`args.ipc * 2**(8 - ceil(log2(num_colors)))`):
    K = 64 -> 4 x ipc, K = 256 -> ipc. It matches the bit count of `storage_bits` (a ceil(log2 K)-bit index per
    pixel instead of 24 bits of RGB, palettes not counted) exactly at K = 64 (24 / 6 = 4 = 2**2); for other K the
    two differ (K = 16: 2**4 = 16 vs 24 / 4 = 6), which `storage_bits` makes visible.
    """
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    return ipc * 2 ** (8 - bits_per_pixel(n_colors))


def storage_bits(n_images: int, n_colors: int, height: int, width: int, channels: int = 3,
                 include_palette: bool = True) -> int:
    """Bits to store `n_images` images: 8 bits per channel and pixel for full colour (K = 256), else a
    ceil(log2 K)-bit palette index per pixel plus (if `include_palette`) K palette entries of 8 bits per channel."""
    if n_colors >= 256:
        return n_images * height * width * channels * 8
    bits = n_images * height * width * bits_per_pixel(n_colors)
    if include_palette:
        bits += n_images * n_colors * channels * 8
    return bits
