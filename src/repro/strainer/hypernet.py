"""Transformer hypernetworks that predict an INR from an image in one forward pass: TransINR and IPC, the two
"generalizable INR" baselines of the paper's Fig. 2 and Table 3 (sheet section 5), with and without test-time
optimisation (TTO).

Architecture facts (read from the official code, implemented here independently):

* Hyponet (both methods; `kakaobrain/ginr-ipc` @ 135f55cd, `src/models/generalizable_INR/modules/hyponet.py` and
  `configs/image/{transinr,low_rank_modulated_transinr}/celeba178_*.yaml`): a ReLU MLP of `hyponet_layers` = 5
  linear maps (the last without activation), hidden width 256, with biases, on deterministic Fourier features of
  the coordinates in [-1, 1]: per axis `ff_dim / 2` frequencies exp(linspace(0, log ff_sigma)), times pi, cos and
  sin (ff_dim 128, ff_sigma 64 -> 256 features). Every weight matrix is normalised to unit L2 norm per output unit
  (over its fan-in; `normalize_weight` defaults to True in `modules/module_config.py`); biases are not normalised.
  Base weights kaiming-uniform (U(+-1/sqrt(fan_in))), biases zero. The output adds 0.5 (`output_bias`) and is
  trained against images in [0, 1]; here that [0, 1] output is mapped affinely to the configured pixel range.
* Data tokens: non-overlapping patches (`unfold`, patch 9, padding 1 at 178 x 178 -> 400 patches), one linear
  map to the token width with a learned positional embedding (`latent_mapping: linear, use_pe: true`).
  Initialisations not read from the official code are this module's own: positional embedding N(0, 0.02^2),
  every Linear U(+-1/sqrt(fan_in)) with zero bias, weight tokens N(0, 1) (TransINR's `torch.randn`).
* Transformer: 6 pre-norm self-attention blocks, width 768, 12 heads, GELU MLP, residual dropout 0.1
  (`configs.py`: AttentionBlockConfig); data tokens and learned weight tokens are processed together and only the
  weight tokens' outputs are read.
* TransINR (`yinboc/trans-inr` @ 3150e3f5, `models/trans_inr.py`): every layer is modulated. Layer l owns
  g_l = min(n_groups, fan_out) weight tokens (n_groups 64 in ginr-ipc's celeba178 TransINR config); a LayerNorm +
  Linear maps each to a fan_in vector; the g_l vectors, tiled across the fan_out columns (column j uses group
  j mod g_l), multiply the learned base weight elementwise, and the product is column-normalised.
* IPC (`kakaobrain/ginr-ipc`, `src/models/generalizable_INR/low_rank_modulated_transinr.py`): only layer
  `ipc_layers` = [1] (the second linear map) is predicted, as a rank-r product U V: the r = 256 weight tokens give
  U [fan_in, r] (LayerNorm + Linear per token), V [r, fan_out] is shared across images (init N(0, 1/(r fan_in))),
  and the base weight of that layer is ignored; every other layer is the shared base weight (column-normalised).
  Training (both): Adam 1e-4, betas (0.9, 0.999), no weight decay, total batch 16, 300 epochs of CelebA at 178.

The predicted INR is returned as explicit per-image layers in the suite's stacked format (`siren.Layer`, weights
[M, in, out], biases [M, 1, out]): "w/o TTO" evaluates it as is; "w/ TTO" fits those explicit weights further with
Adam, the way the official `forward_with_params` evaluates per-instance modulated parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.common.errors import UserError
from repro.common.progress import progress
from repro.strainer.config import HypernetConfig
from repro.strainer.siren import Layer

KINDS = ("transinr", "ipc")
LABELS = {"transinr": "TransINR", "ipc": "IPC"}
EVAL_IMAGES = 64  # training images the reported training PSNR is measured on


def fourier_features(coords: Tensor, ff_dim: int, ff_sigma: float) -> Tensor:
    """[P, d] coordinates -> [P, 2 * ff_dim]: per axis ff_dim / d log-spaced frequencies from 1 to ff_sigma,
    features cos(pi f x) then sin(pi f x), frequencies of axis 0 first (the layout of ginr-ipc's
    `deterministic_transinr` mapping)."""
    d = coords.shape[-1]
    if ff_dim % d:
        raise ValueError(f"ff_dim {ff_dim} must be a multiple of the coordinate dimension {d}")
    freqs = torch.exp(torch.linspace(0.0, math.log(ff_sigma), ff_dim // d, device=coords.device,
                                     dtype=coords.dtype))
    phase = math.pi * (coords.unsqueeze(-1) * freqs).reshape(*coords.shape[:-1], -1)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def relu_forward(layers: Sequence[Layer], feats: Tensor) -> Tensor:
    """The hyponet on shared input features [P, F]: linear maps with ReLU between them; returns [M, P, out]
    (the raw output, before the 0.5 output bias)."""
    x = feats.unsqueeze(0)
    for i, (w, b) in enumerate(layers):
        x = torch.matmul(x, w) + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


LUMA = (0.299, 0.587, 0.114)  # as repro.strainer.data (BT.601)


class Renderer:
    """Coordinates -> images in the configured pixel range for explicit hyponet layers (what TTO optimises).

    `gray`: an RGB hyponet rendered as its luma (BT.601, as the suite's grayscale images are made), for 1-channel
    targets fitted by a hypernetwork trained on colour images (Table 3's out-of-domain MRI column; a choice of
    ours, the paper's handling of grayscale inputs is not known)."""

    def __init__(self, coords: Tensor, ff_dim: int, ff_sigma: float, value_range=(-1.0, 1.0), gray: bool = False):
        self.feats = fourier_features(coords, ff_dim, ff_sigma)
        self.lo, self.hi = float(value_range[0]), float(value_range[1])
        self.luma = torch.tensor(LUMA, device=coords.device).view(3, 1) if gray else None

    def __call__(self, layers: Sequence[Layer], coords: Tensor | None = None) -> Tensor:
        unit = relu_forward(layers, self.feats) + 0.5  # the official output bias: images in [0, 1]
        if self.luma is not None:
            unit = torch.matmul(unit, self.luma)
        return self.lo + (self.hi - self.lo) * unit


class Hypernet(nn.Module):
    """TransINR (`kind='transinr'`) or IPC (`kind='ipc'`) for square images of `resolution` with `channels`."""

    def __init__(self, kind: str, cfg: HypernetConfig, *, width: int, resolution: int, channels: int, seed: int):
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"unknown hypernetwork '{kind}'; known: {list(KINDS)}")
        span = resolution + 2 * cfg.padding
        if span % cfg.patch:
            raise UserError(f"hypernet.patch {cfg.patch} with padding {cfg.padding} does not tile {resolution} x "
                            f"{resolution} images; choose patch and padding with (resolution + 2 padding) % patch == 0 "
                            f"in config/strainer.yaml")
        if cfg.dim % cfg.heads:
            raise UserError(f"hypernet.dim {cfg.dim} must be a multiple of hypernet.heads {cfg.heads}")
        self.kind, self.cfg, self.width, self.resolution, self.channels = kind, cfg, width, resolution, channels
        gen = torch.Generator().manual_seed(int(seed))
        self.n_patches = (span // cfg.patch) ** 2
        sizes = [2 * cfg.ff_dim] + [width] * (cfg.hyponet_layers - 1) + [channels]
        self.dims = list(zip(sizes[:-1], sizes[1:]))

        def uniform(shape, bound):
            return nn.Parameter((torch.rand(*shape, generator=gen) * 2 - 1) * bound)

        self.patch_embed = nn.Linear(channels * cfg.patch ** 2, cfg.dim)
        self.pos = nn.Parameter(torch.randn(self.n_patches, cfg.dim, generator=gen) * 0.02)
        block = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(block, cfg.depth, enable_nested_tensor=False)
        # base weights (kaiming-uniform with a = sqrt(5): U(+-1/sqrt(fan_in))) and zero biases
        self.base_w = nn.ParameterList([uniform((i, o), 1.0 / math.sqrt(i)) for i, o in self.dims])
        self.base_b = nn.ParameterList([nn.Parameter(torch.zeros(1, o)) for _, o in self.dims])
        if kind == "transinr":
            self.modulated = list(range(len(self.dims)))
            self.groups = [min(cfg.transinr_groups, o) for _, o in self.dims]
            for g, (_, o) in zip(self.groups, self.dims):
                if o % g:
                    raise UserError(f"TransINR: {cfg.transinr_groups} weight groups do not divide a layer of "
                                    f"width {o}; set hypernet.transinr_groups to a divisor of model.width")
        else:
            self.modulated = [int(i) for i in cfg.ipc_layers]
            if any(not 0 <= i < len(self.dims) for i in self.modulated):
                raise UserError(f"hypernet.ipc_layers {self.modulated} out of range for {len(self.dims)} layers")
            self.groups = [cfg.ipc_rank if i in self.modulated else 0 for i in range(len(self.dims))]
            self.shared_factor = nn.ParameterDict({
                str(i): nn.Parameter(torch.randn(1, cfg.ipc_rank, self.dims[i][1], generator=gen)
                                     / math.sqrt(cfg.ipc_rank * self.dims[i][0])) for i in self.modulated})
        # IPC ignores the base weight of a modulated layer (ginr-ipc `ignore_base_param_dict`): not trained
        self.unused = {f"base_w.{i}" for i in self.modulated} if kind == "ipc" else set()
        self.n_tokens = sum(self.groups[i] for i in self.modulated)
        self.wtokens = nn.Parameter(torch.randn(self.n_tokens, cfg.dim, generator=gen))
        self.postfc = nn.ModuleDict({str(i): nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, self.dims[i][0]))
                                     for i in self.modulated})
        # nn.Linear's own init drew from the global generator: redraw every such weight from `gen` (reproducible)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                bound = 1.0 / math.sqrt(mod.in_features)
                with torch.no_grad():
                    mod.weight.copy_((torch.rand(mod.weight.shape, generator=gen) * 2 - 1) * bound)
                    mod.bias.zero_()

    def tokens(self, images: Tensor) -> Tensor:
        """[B, R*R, C] images in [0, 1] -> data tokens [B, n_patches, dim]."""
        b, r, c, p = images.shape[0], self.resolution, self.channels, self.cfg.patch
        x = images.reshape(b, r, r, c).permute(0, 3, 1, 2)
        patches = F.unfold(x, kernel_size=p, stride=p, padding=self.cfg.padding)  # [B, C p p, n_patches]
        return self.patch_embed(patches.transpose(1, 2)) + self.pos

    def forward(self, images: Tensor) -> list[Layer]:
        """Images [B, R*R, C] in [0, 1] -> the predicted INR of each, explicit layers [B, in, out] / [B, 1, out]."""
        b = images.shape[0]
        data = self.tokens(images)
        out = self.transformer(torch.cat([data, self.wtokens.expand(b, -1, -1)], dim=1))[:, data.shape[1]:]
        layers, start = [], 0
        for i, (fan_in, fan_out) in enumerate(self.dims):
            w, bias = self.base_w[i].expand(b, -1, -1), self.base_b[i].expand(b, -1, -1)
            if i in self.modulated:
                g = self.groups[i]
                mod = self.postfc[str(i)](out[:, start:start + g]).transpose(1, 2)  # [B, fan_in, g]
                start += g
                if self.kind == "transinr":
                    w = w * mod.repeat(1, 1, fan_out // g)
                else:
                    w = torch.bmm(mod, self.shared_factor[str(i)].expand(b, -1, -1))
            layers.append((F.normalize(w, dim=1), bias))
        return layers

    def trainable(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name not in self.unused]

    def meta(self) -> dict:
        return {"kind": self.kind, "cfg": asdict(self.cfg), "width": self.width, "resolution": self.resolution,
                "channels": self.channels}


def unit_range(targets: Tensor, value_range) -> Tensor:
    """Targets in `value_range` -> [0, 1] (the hypernetwork's input convention)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return (targets - lo) / (hi - lo)


@dataclass
class TrainedHypernet:
    model: Hypernet
    seconds: float
    steps: int
    train_images: int
    train_psnr: float
    loss: np.ndarray  # per-step training MSE (pixel range of the targets)

    def to_dict(self) -> dict:
        return {"meta": self.model.meta(), "state": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "seconds": self.seconds, "steps": self.steps, "train_images": self.train_images,
                "train_psnr": self.train_psnr, "loss": self.loss}

    @classmethod
    def from_dict(cls, d: dict, seed: int = 0) -> "TrainedHypernet":
        m = d["meta"]
        cfg = HypernetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in m["cfg"].items()})
        model = Hypernet(m["kind"], cfg, width=m["width"], resolution=m["resolution"], channels=m["channels"],
                         seed=seed)
        model.load_state_dict(d["state"])
        return cls(model.eval(), d["seconds"], d["steps"], d["train_images"], d["train_psnr"], d["loss"])


def train_hypernet(kind: str, cfg: HypernetConfig, images: Tensor, coords: Tensor, *, width: int, seed: int,
                   value_range=(-1.0, 1.0), desc: str = "") -> TrainedHypernet:
    """Train a hypernetwork on `images` [N, R*R, C] (pixel range `value_range`; they may stay on the CPU, each
    batch is moved to the coordinates' device): Adam at `cfg.lr`, `cfg.steps` steps of `cfg.batch` images drawn
    without replacement per epoch, loss = mean per-image MSE of the rendered INR over every pixel."""
    from repro.strainer.fit import Adam, per_image_mse, psnr_from_mse

    res = int(round(images.shape[1] ** 0.5))
    model = Hypernet(kind, cfg, width=width, resolution=res, channels=images.shape[-1], seed=seed).to(coords.device)
    model.train()
    render = Renderer(coords, cfg.ff_dim, cfg.ff_sigma, value_range)
    opt = Adam(model.trainable(), lr=cfg.lr)
    gen = torch.Generator().manual_seed((int(seed) + 1) % 2**62)
    torch.manual_seed((int(seed) + 2) % 2**62)  # dropout masks
    batch = min(cfg.batch, images.shape[0])
    loss_hist = torch.empty(cfg.steps, dtype=torch.float64, device=coords.device)
    order, pos = torch.randperm(images.shape[0], generator=gen), 0
    t0 = time.perf_counter()
    for step in progress(range(cfg.steps), desc=desc or f"train {LABELS[kind]}", total=cfg.steps):
        if pos + batch > len(order):
            order, pos = torch.randperm(images.shape[0], generator=gen), 0
        target = images[order[pos:pos + batch]].to(coords.device)  # the pool may stay on the CPU (paper: ~30k)
        pos += batch
        loss = per_image_mse(render(model(unit_range(target, value_range))), target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_hist[step] = loss.detach()
    seconds = time.perf_counter() - t0
    losses = loss_hist.cpu().numpy()
    if not np.isfinite(losses).all():
        raise UserError(f"{LABELS[kind]} training: the loss became NaN/inf at step "
                        f"{int(np.argmax(~np.isfinite(losses)))}; lower hypernet.lr in config/strainer.yaml")
    model.eval()
    shown = images[:EVAL_IMAGES]  # training PSNR (Table 5) on the first images of the pool, a batch at a time
    with torch.no_grad():
        mse = torch.cat([per_image_mse(render(model(unit_range(part, value_range))).clamp(*value_range), part)
                         for part in (t.to(coords.device) for t in shown.split(batch))])
    return TrainedHypernet(model, seconds, cfg.steps, images.shape[0],
                           float(psnr_from_mse(mse.cpu().numpy(), value_range).mean()), losses)


@torch.no_grad()
def predict(model: Hypernet, targets: Tensor, value_range=(-1.0, 1.0)) -> list[Layer]:
    """The predicted INRs (explicit, detached layers) of test images [M, R*R, C] in `value_range`."""
    model.eval()
    return [(w.detach().contiguous(), b.detach().contiguous())
            for w, b in model(unit_range(targets, value_range))]
