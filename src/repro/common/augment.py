"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021), batched and differentiable in the images.

Every transform is a differentiable function of the input batch with per-sample random parameters, so gradients
flow back to synthetic pixels. The parameter values follow the DSA/MTT/AutoPalette code's `ParamDiffAug`
(paper sheet autopalette.md, section 5): flip p 0.5, scale 1.2, rotate 15 deg, crop-pad 0.125, cutout 0.5,
brightness 1.0, saturation 2.0, contrast 0.5. In mode "S" (the code's default) one strategy group, chosen at
random per call, is applied to the whole batch; in mode "M" all groups are applied in sequence.

"Siamese" means two batches can receive the same random transform: pass the same `seed` to two calls.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

STRATEGIES = ("color", "crop", "cutout", "flip", "scale", "rotate")


@dataclass(frozen=True)
class DSAParams:
    """Ranges of the DSA transforms (defaults as in the DSA/MTT code)."""

    strategy: str = "color_crop_cutout_flip_scale_rotate"
    mode: str = "S"
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    # One parameter draw for the whole batch (the DSA code's Siamese mode, `theta[:] = theta[0]` when a seed is
    # given): with the same seed, batches of any size receive the identical transform (DM's real/synthetic pair).
    batch_shared: bool = False

    def groups(self) -> list[str]:
        groups = [g for g in self.strategy.split("_") if g]
        unknown = [g for g in groups if g not in STRATEGIES]
        if unknown:
            raise ValueError(f"DSA strategy '{self.strategy}': unknown part(s) {unknown}; use parts of {STRATEGIES}")
        if self.mode not in ("S", "M"):
            raise ValueError(f"DSA mode '{self.mode}' unknown; use 'S' (one random group) or 'M' (all groups)")
        return groups


class DSA:
    """Callable DSA augmenter: `aug(x)` for a batch [N, C, H, W]; `aug(x, seed=s)` for a Siamese draw."""

    def __init__(self, params: DSAParams | None = None, seed: int = 0):
        self.params = params or DSAParams()
        self.groups = self.params.groups()
        self._rng = random.Random(seed)  # host-side choices (which group; seeds): no device synchronisation

    def __call__(self, x: Tensor, seed: int | None = None) -> Tensor:
        if not self.groups:
            return x
        seed = self._rng.randrange(2**62) if seed is None else seed
        gen = torch.Generator(device=x.device)
        gen.manual_seed(seed)
        if self.params.mode == "S":
            groups = [self.groups[seed % len(self.groups)]]
        else:
            groups = self.groups
        for g in groups:
            x = _APPLY[g](x, self.params, gen)
        return x


def _rand(n: int, x: Tensor, gen: torch.Generator, shared: bool = False) -> Tensor:
    if shared:
        return torch.rand(1, device=x.device, dtype=x.dtype, generator=gen).expand(n)
    return torch.rand(n, device=x.device, dtype=x.dtype, generator=gen)


def _randint(lo: int, hi: int, n: int, x: Tensor, gen: torch.Generator, shared: bool = False) -> Tensor:
    return torch.randint(lo, hi, (1 if shared else n,), device=x.device, generator=gen).expand(n)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def scale(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    n, r = x.shape[0], p.ratio_scale
    sx = _rand(n, x, gen, p.batch_shared) * (r - 1.0 / r) + 1.0 / r
    sy = _rand(n, x, gen, p.batch_shared) * (r - 1.0 / r) + 1.0 / r
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def rotate(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    ang = (_rand(x.shape[0], x, gen, p.batch_shared) - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    c, s, zero = torch.cos(ang), torch.sin(ang), torch.zeros_like(ang)
    theta = torch.stack([torch.stack([c, s, zero], 1), torch.stack([-s, c, zero], 1)], 1)
    return _affine(x, theta)


def flip(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    mask = (_rand(x.shape[0], x, gen, p.batch_shared) < p.prob_flip).to(x.dtype).view(-1, 1, 1, 1)
    return mask * x.flip(3) + (1 - mask) * x


def color(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    n = x.shape[0]
    x = x + (_rand(n, x, gen, p.batch_shared) - 0.5).view(-1, 1, 1, 1) * p.brightness
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (_rand(n, x, gen, p.batch_shared) * p.saturation).view(-1, 1, 1, 1) + m
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (_rand(n, x, gen, p.batch_shared) + p.contrast).view(-1, 1, 1, 1) + m


def crop(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    """Random translation by up to ratio_crop_pad of the size, zero-filled (pad-and-crop), per sample."""
    n, _, h, w = x.shape
    sh, sw = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    dy = _randint(-sh, sh + 1, n, x, gen, p.batch_shared)
    dx = _randint(-sw, sw + 1, n, x, gen, p.batch_shared)
    ys = torch.arange(h, device=x.device).view(1, h, 1) + dy.view(n, 1, 1)   # source row of each output row
    xs = torch.arange(w, device=x.device).view(1, 1, w) + dx.view(n, 1, 1)
    valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1).to(x.dtype)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    out = torch.gather(x.reshape(n, x.shape[1], h * w), 2, idx).view_as(x)
    return out * valid


def cutout(x: Tensor, p: DSAParams, gen: torch.Generator) -> Tensor:
    """Zero a square of side ratio_cutout * size at a random centre, per sample."""
    n, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    y0 = _randint(0, h, n, x, gen, p.batch_shared).reshape(n, 1, 1) - ch // 2  # top-left corner
    x0 = _randint(0, w, n, x, gen, p.batch_shared).reshape(n, 1, 1) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_APPLY = {"color": color, "crop": crop, "cutout": cutout, "flip": flip, "scale": scale, "rotate": rotate}
