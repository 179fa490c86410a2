"""The generated parameters: classifier heads, their flat vectors, tokens and normalisation.

Tina generates the classifier of a personalised model (for ResNet-20 and CLIP only the last linear layer; paper sheet
section 2). A head for a task of n <= k_max classes is a `nn.Linear(feat_dim, k_max)`; the rows of unused slots are
zero and masked out of the logits (Tina's "classification-sequence padding" for variable task sizes is known only
from a third-party summary, open item 5: masking unused slots is our reading of it).

Flat order follows the module's `state_dict` (weight, then bias), as the Tina code flattens p-models
(`get_flat_params`: concatenate the flattened state_dict values; [Tina-repo `Gpt/data/dataset_lmdb.py`]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class HeadLayout:
    k_max: int
    feat_dim: int

    @property
    def numel(self) -> int:
        return self.k_max * self.feat_dim + self.k_max

    def flatten(self, weight: Tensor, bias: Tensor) -> Tensor:
        """[..., k_max, feat_dim] weights and [..., k_max] biases -> [..., numel] (weight first, as state_dict)."""
        return torch.cat([weight.flatten(-2), bias], dim=-1)

    def unflatten(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        if flat.shape[-1] != self.numel:
            raise ValueError(f"flat head has {flat.shape[-1]} values, layout expects {self.numel}")
        w, b = flat.split([self.k_max * self.feat_dim, self.k_max], dim=-1)
        return w.unflatten(-1, (self.k_max, self.feat_dim)), b

    def load_into(self, linear: nn.Linear, flat: Tensor) -> nn.Linear:
        """Copy one flat head into a `nn.Linear(feat_dim, k_max)`."""
        if (linear.out_features, linear.in_features) != (self.k_max, self.feat_dim):
            raise ValueError(f"linear layer is {linear.in_features}->{linear.out_features}, layout is "
                             f"{self.feat_dim}->{self.k_max}")
        w, b = self.unflatten(flat.detach())
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        return linear

    def from_module(self, linear: nn.Linear) -> Tensor:
        return torch.cat([t.detach().reshape(-1) for t in linear.state_dict().values()])

    def param_sizes(self) -> list[int]:
        return [self.k_max * self.feat_dim, self.k_max]


def permute_slots(weight: Tensor, bias: Tensor, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder the class slots of a batch of heads: slot j of the result is slot perm[:, j] of the input.

    Tina's permutation augmentation shuffles the class list and the rows of `fc.weight`/`fc.bias` together
    ([Tina-repo `Gpt/data/dataset_lmdb.py`, `classifier_aug_fn`]); callers permute the text tokens with the same
    `perm`.
    """
    idx = perm.unsqueeze(-1).expand(-1, -1, weight.shape[-1])
    return weight.gather(1, idx), bias.gather(1, perm)


def build_splits(sizes: list[int], policy: str, chunk_size: int, k_max: int = 0, feat_dim: int = 0
                 ) -> list[list[int]]:
    """The flat indices that make up each token.

    * `chunk_within_layer` (G.pt and Tina's configs, `split_policy: chunk_within_layer`): each layer's values are
      cut into chunks of `chunk_size`; no token mixes two layers ([Tina-repo `Gpt/models/transformer.py`,
      `GPT.build_splits`]).
    * `class_rows`: one token per class slot holding its weight row and its bias, so that token k lines up with the
      k-th class's text token (our choice for heads; every token has the same size, so one encoder can be shared).
    """
    if policy == "chunk_within_layer":
        out, start = [], 0
        for size in sizes:
            for lo in range(0, size, chunk_size):
                out.append(list(range(start + lo, start + min(lo + chunk_size, size))))
            start += size
        return out
    if policy == "class_rows":
        if k_max * feat_dim + k_max != sum(sizes):
            raise ValueError("class_rows needs a head layout (k_max, feat_dim) matching the parameter sizes")
        return [list(range(k * feat_dim, (k + 1) * feat_dim)) + [k_max * feat_dim + k] for k in range(k_max)]
    raise ValueError(f"unknown split policy '{policy}' (use chunk_within_layer or class_rows)")


class TokenLayout(nn.Module):
    """Gathers a flat vector into padded tokens [B, n_tokens, width] and scatters tokens back (no Python loops)."""

    def __init__(self, splits: list[list[int]]):
        super().__init__()
        numel = sum(len(s) for s in splits)
        width = max(len(s) for s in splits)
        index = torch.full((len(splits), width), numel, dtype=torch.long)  # `numel` points at an appended zero
        for i, s in enumerate(splits):
            index[i, :len(s)] = torch.tensor(s)
        flat_pos = torch.empty(numel, dtype=torch.long)  # where each flat value sits in the [n_tokens * width] grid
        valid = index.flatten() < numel
        flat_pos[index.flatten()[valid]] = torch.nonzero(valid).squeeze(1)
        if sorted(index.flatten()[valid].tolist()) != list(range(numel)):
            raise ValueError("token splits must cover every parameter exactly once")
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("flat_pos", flat_pos, persistent=False)
        self.numel, self.n_tokens, self.width = numel, len(splits), width
        self.sizes = [len(s) for s in splits]

    def to_tokens(self, flat: Tensor) -> Tensor:
        padded = torch.cat([flat, flat.new_zeros(flat.shape[0], 1)], dim=1)
        return padded[:, self.index]

    def from_tokens(self, tokens: Tensor) -> Tensor:
        return tokens.flatten(1)[:, self.flat_pos]


@dataclass(frozen=True)
class ScalarNormalizer:
    """x -> x * coeff, the "openai" normaliser of G.pt/Tina (DALL-E 2's scaling of CLIP latents; config
    `normalizer: openai`, [Tina-repo configs]). The coefficient is fitted as 1 / std of the training parameters."""

    coeff: float

    @classmethod
    def fit(cls, values: Tensor) -> "ScalarNormalizer":
        std = float(values.float().std())
        if not std > 0:
            raise ValueError("cannot normalise parameters with zero spread")
        return cls(1.0 / std)

    def normalize(self, x: Tensor) -> Tensor:
        return x * self.coeff

    def unnormalize(self, x: Tensor) -> Tensor:
        return x / self.coeff
