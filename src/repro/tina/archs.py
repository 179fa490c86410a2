"""The networks Tina generates, chosen by `classifier.arch`, and the flat layout of their parameters.

Whole networks (every parameter generated; [Tina-repo `data_gen/train_cifar10.py`], parameter counts in the paper
sheet section 2, for 10 classes):

| arch | layers (3x3 convs, padding 1, no bias; the first has stride 2) | parameters |
|---|---|---|
| `convnet5k` | 3->16, 16->32, GAP, fc 32->k (the model card's "2-layer CNN") | 5,370 |
| `convnet10k` | 3->16, 16->32, 32->32, GAP, fc (Tina's CIFAR-100 default, `Gpt/tasks.py`) | 14,586 |
| `convnet33k` | 3->16, 16->32, 32->32, 32->64, GAP, fc 64->k (size study) | 33,338 |
| `convnet76k` | 3->64, 64->64, 64->64, GAP, fc 64->k (size study) | 76,106 |

Heads on a frozen backbone (only the classifier generated): `resnet20_after` (ResNet-20's avgpool + fc 64->k, 650
parameters; the backbone is the generic ResNet-20) and `clip_vit_b32_after` (fc 512->k on CLIP ViT-B/32 image
features, 5,130 parameters; Tina's `vit_base_224_after`).

The classifier is always the module `fc` with k_max outputs. Flat order is the module's `state_dict` order, as Tina
flattens p-models (`get_flat_params`, [Tina-repo `Gpt/data/dataset_lmdb.py`]); `ParamLayout` flattens and
unflattens batches of parameter sets and reorders the class rows of `fc` (the permutation augmentation and the
slot mapping of retrieval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.common.errors import UserError


@dataclass(frozen=True)
class ArchSpec:
    name: str
    whole: bool                      # True: every parameter generated; False: a head on a frozen backbone
    convs: tuple[int, ...] = ()      # conv widths of a whole network (first conv has stride 2)
    backbone: str | None = None      # frozen feature extractor of a head arch
    feat_dim: int = 0                # head input width of a head arch


ARCHS = {
    "convnet5k": ArchSpec("convnet5k", True, (16, 32)),
    "convnet10k": ArchSpec("convnet10k", True, (16, 32, 32)),
    "convnet33k": ArchSpec("convnet33k", True, (16, 32, 32, 64)),
    "convnet76k": ArchSpec("convnet76k", True, (64, 64, 64)),
    "resnet20_after": ArchSpec("resnet20_after", False, backbone="resnet20", feat_dim=64),
    "clip_vit_b32_after": ArchSpec("clip_vit_b32_after", False, backbone="clip-vit-b32", feat_dim=512),
}


def spec(arch: str) -> ArchSpec:
    if arch not in ARCHS:
        raise UserError(f"classifier.arch '{arch}' unknown; use one of {', '.join(ARCHS)}")
    return ARCHS[arch]


class TinaConvNet(nn.Module):
    """Tina's ConvNet family: 3x3 convs without bias (the first with stride 2), ReLU, global average pooling, fc."""

    def __init__(self, widths: tuple[int, ...], num_classes: int, channel: int = 3):
        super().__init__()
        ins = (channel, *widths[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2 if j == 0 else 1, padding=1, bias=False)
                                   for j, (i, o) in enumerate(zip(ins, widths)))
        self.num_feat = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)

    def embed(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))


class Head(nn.Module):
    """The generated part of a head arch: one linear classifier on frozen features."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.num_feat = feat_dim
        self.fc = nn.Linear(feat_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


def build_generated(arch: str, num_classes: int) -> nn.Module:
    """The module whose parameters are generated: a whole network (input images) or a head (input features)."""
    s = spec(arch)
    return TinaConvNet(s.convs, num_classes) if s.whole else Head(s.feat_dim, num_classes)


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of a generated module's parameters in state_dict order; `fc` is the classifier."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    k_max: int

    @classmethod
    def of(cls, module: nn.Module) -> "ParamLayout":
        sd = module.state_dict()
        if "fc.weight" not in sd or "fc.bias" not in sd:
            raise ValueError("a generated module needs its classifier as `fc` (weight and bias)")
        return cls(tuple(sd), tuple(tuple(v.shape) for v in sd.values()), int(sd["fc.bias"].shape[0]))

    @classmethod
    def for_arch(cls, arch: str, k_max: int) -> "ParamLayout":
        return cls.of(build_generated(arch, k_max))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    @property
    def feat_dim(self) -> int:
        return self.shapes[self.names.index("fc.weight")][1]

    def _span(self, name: str) -> tuple[int, int]:
        i = self.names.index(name)
        lo = sum(self.sizes[:i])
        return lo, lo + self.sizes[i]

    @property
    def head_only(self) -> bool:
        return set(self.names) == {"fc.weight", "fc.bias"}

    def flatten(self, params: dict[str, Tensor]) -> Tensor:
        """{name: [B, *shape]} -> [B, numel]."""
        return torch.cat([params[n].flatten(1) for n in self.names], dim=1)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """[B, numel] -> {name: [B, *shape]}."""
        if flat.shape[-1] != self.numel:
            raise ValueError(f"flat parameters have {flat.shape[-1]} values, layout expects {self.numel}")
        parts = flat.split(self.sizes, dim=-1)
        return {n: p.unflatten(-1, s) for n, p, s in zip(self.names, parts, self.shapes)}

    def from_module(self, module: nn.Module) -> Tensor:
        """One module's parameters as a flat vector [numel]."""
        return torch.cat([v.detach().reshape(-1) for v in module.state_dict().values()])

    def load_into(self, module: nn.Module, flat: Tensor) -> nn.Module:
        """Copy one flat vector into `module`: every one of its parameters is overwritten (strict)."""
        params = {k: v[0] for k, v in self.unflatten(flat.detach().reshape(1, -1)).items()}
        module.load_state_dict(params, strict=True)
        return module

    def select_classes(self, flat: Tensor, idx: Tensor) -> Tensor:
        """Reorder the classifier's class rows: row j of the result is row idx[:, j] of the input (-1: a zero row).

        With a permutation this is Tina's class-order augmentation, which shuffles the class list together with the
        rows of `fc.weight` and `fc.bias` ([Tina-repo `Gpt/data/dataset_lmdb.py`]); other layers are untouched.
        """
        out = flat.clone()
        keep = (idx >= 0).to(flat.dtype)
        src = idx.clamp(min=0)
        for name in ("fc.weight", "fc.bias"):
            lo, hi = self._span(name)
            block = flat[:, lo:hi].unflatten(1, self.shapes[self.names.index(name)])          # [B, K] or [B, K, F]
            gather = src if block.ndim == 2 else src.unsqueeze(-1).expand(-1, -1, block.shape[-1])
            picked = block.gather(1, gather) * (keep if block.ndim == 2 else keep.unsqueeze(-1))
            out[:, lo:hi] = picked.flatten(1)
        return out

    def zero_unused(self, flat: Tensor, slot_mask: Tensor) -> Tensor:
        """Zero the classifier rows of unused slots ([B, k_max] mask)."""
        idx = torch.where(slot_mask, torch.arange(self.k_max, device=flat.device).expand_as(slot_mask), -1)
        return self.select_classes(flat, idx)

    def head(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """The classifier of each flat vector: weight [B, K, F], bias [B, K]."""
        p = self.unflatten(flat)
        return p["fc.weight"], p["fc.bias"]

    def with_head(self, flat: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        out = flat.clone()
        for name, v in (("fc.weight", weight), ("fc.bias", bias)):
            lo, hi = self._span(name)
            out[:, lo:hi] = v.flatten(1)
        return out
