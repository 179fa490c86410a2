"""The DDPM U-Net (Ho et al. 2020, §4 and App. B; official `diffusion_tf/models/unet.py`, ddpm sheet §3).

PixelCNN++-style Wide-ResNet U-Net: group normalisation, swish, the Transformer sinusoidal time embedding through a
two-layer MLP (width 4·ch) added into every residual block, dropout in every residual block, self-attention at the
listed resolutions and in the middle, strided-conv downsampling (padding right/bottom, as TF's 'SAME') and
nearest-neighbour + conv upsampling. At ch 128, multipliers (1, 2, 2, 2), two residual blocks per level and
attention at 16x16 it has 35.7M parameters (paper App. B; code comment on model `unet2d16b2`).

Initialisation (`init: official`, the default): the official `nn.default_init` (hojonathanho/diffusion@c461299
diffusion_tf/nn.py): every conv and dense weight from TF's variance_scaling(scale, mode='fan_avg',
distribution='uniform'), i.e. U(-sqrt(3 scale / fan_avg), +sqrt(3 scale / fan_avg)) with fan_avg = (fan_in + fan_out)
/ 2 over the receptive field, all biases zero; scale 1 everywhere except `init_scale=0.` (which default_init turns
into 1e-10) on each residual block's `conv2`, the attention `proj_out` and the final `conv_out`
(diffusion_tf/models/unet.py). So every residual branch starts as the identity and the network's output starts at
~1e-5 of the data scale. `init: pytorch` keeps PyTorch's layer defaults (the behaviour before issue 11).

Module names follow the layout of the PyTorch conversion of the released weights (pesser/pytorch_diffusion
`Model`: `temb.dense`, `conv_in`, `down[i].block[j]`, `down[i].attn[j]`, `down[i].downsample.conv`, `mid.block_1`,
`mid.attn_1`, `mid.block_2`, `up[i]...`, `norm_out`, `conv_out`), so that state dict loads without renaming
(`repro.ddpm.released`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.ddpm.config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t [B] -> [B, dim]: sin half then cos half, frequencies
    10000^(-k/(dim/2 - 1)) (the official `get_timestep_embedding`)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


#: scale of the official default_init for the layers it initialises with init_scale=0. (nn.py: 1e-10 if scale == 0)
ZERO_INIT_SCALE = 1e-10


def variance_scaling_uniform_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """TF variance_scaling(scale, 'fan_avg', 'uniform') on a torch conv [out, in, kh, kw] or linear [out, in]
    weight: the same fans as TF's [kh, kw, in, out] / [in, out] layouts, so Xavier-uniform with gain sqrt(scale)."""
    return nn.init.xavier_uniform_(weight, gain=math.sqrt(scale))


def official_init_(model: nn.Module, zero_init: set[nn.Module]) -> None:
    """Re-initialise every Conv2d and Linear of `model` as the official code; `zero_init` get scale 1e-10."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            variance_scaling_uniform_(module.weight, ZERO_INIT_SCALE if module in zero_init else 1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb_ch: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the spatial positions, 1x1-conv projections, residual."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (m(h).reshape(b, 1, c, hh * ww).transpose(2, 3) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)           # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """ε_θ(x_t, t) (or μ_θ, and optionally log σ²_θ: `out_ch` = 2·in_channels for a learned variance)."""

    def __init__(self, cfg: ModelConfig, out_ch: int | None = None):
        super().__init__()
        self.cfg = cfg
        ch, groups = cfg.ch, cfg.norm_groups
        self.temb_ch = 4 * ch
        self.out_ch = out_ch or cfg.in_channels
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, self.temb_ch), nn.Linear(self.temb_ch, self.temb_ch)])
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        def res(cin: int, cout: int) -> ResnetBlock:
            return ResnetBlock(cin, cout, self.temb_ch, cfg.dropout, groups)

        levels = len(cfg.ch_mult)
        skip_ch = [ch]                       # channels of every activation the up path concatenates
        cur, res_now = ch, cfg.resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                level.block.append(res(cur, ch * mult))
                cur = ch * mult
                if res_now in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(cur, groups))
                skip_ch.append(cur)
            if i != levels - 1:
                level.downsample = Downsample(cur)
                res_now //= 2
                skip_ch.append(cur)
            self.down.append(level)

        self.mid = nn.Module()
        self.mid.block_1 = res(cur, cur)
        self.mid.attn_1 = AttnBlock(cur, groups)
        self.mid.block_2 = res(cur, cur)

        up_levels: list[nn.Module] = []
        for i in reversed(range(levels)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(res(cur + skip_ch.pop(), ch * cfg.ch_mult[i]))
                cur = ch * cfg.ch_mult[i]
                if res_now in cfg.attn_resolutions:
                    level.attn.append(AttnBlock(cur, groups))
            if i != 0:
                level.upsample = Upsample(cur)
                res_now *= 2
            up_levels.insert(0, level)       # up[i] is the level at resolution index i, as in the released layout
        self.up = nn.ModuleList(up_levels)
        self.norm_out = nn.GroupNorm(groups, cur, eps=1e-6)
        self.conv_out = nn.Conv2d(cur, self.out_ch, 3, padding=1)
        if cfg.init == "official":
            official_init_(self, self.zero_init_layers())
        elif cfg.init != "pytorch":
            raise ValueError(f"model.init must be 'official' or 'pytorch', not {cfg.init!r}")

    def zero_init_layers(self) -> set[nn.Module]:
        """The layers the official code creates with init_scale=0.: the second conv of every residual block, the
        output projection of every attention block, and the final conv."""
        layers: set[nn.Module] = {self.conv_out}
        for m in self.modules():
            if isinstance(m, ResnetBlock):
                layers.add(m.conv2)
            elif isinstance(m, AttnBlock):
                layers.add(m.proj_out)
        return layers

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [-1, 1]-scale, t [B] integer steps 0..T-1 (0-indexed, as the official code)."""
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](timestep_embedding(t, self.cfg.ch))))
        hs = [self.conv_in(x)]
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(hs[-1], temb)
                hs.append(level.attn[j](h) if len(level.attn) else h)
            if hasattr(level, "downsample"):
                hs.append(level.downsample(hs[-1]))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cpu_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """The network's layout for training and evaluation: channels-last on the CPU, where oneDNN's convolutions then
    skip a layout reorder of every activation (issue 15: paper U-Net forward, batch 16, 2 threads, 1.27x faster;
    smoke U-Net training step, batch 16, one thread, 0.135 s instead of 0.170); unchanged on CUDA (not measured
    there). Same numbers up to float rounding (tests/test_bench.py)."""
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model
