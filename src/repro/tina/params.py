"""Tokens and normalisation of the generated parameters (their flat layout is `repro.tina.archs.ParamLayout`).

A model for a task of n <= k_max classes has a k_max-way classifier; the rows of unused slots are zero and masked
out of the logits (Tina's "classification-sequence padding" for variable task sizes is known only from a
third-party summary, open item 5: masking unused slots is our reading of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def build_splits(sizes: list[int], policy: str, chunk_size: int, k_max: int = 0, feat_dim: int = 0
                 ) -> list[list[int]]:
    """The flat indices that make up each token.

    * `chunk_within_layer` (G.pt and Tina's configs, `split_policy: chunk_within_layer`): each layer's values are
      cut into chunks of `chunk_size`; no token mixes two layers ([Tina-repo `Gpt/models/transformer.py`,
      `GPT.build_splits`]).
    * `class_rows`: one token per class slot holding its weight row and its bias, so that token k lines up with the
      k-th class's text token (our choice for heads; every token has the same size, so one encoder can be shared).
    * `layer_chunks_class_rows` (the project's choice for whole networks at small scale): `chunk_within_layer` for
      every layer but the classifier, whose weight rows and biases become `class_rows` tokens (the classifier is the
      last two entries of `sizes`, `fc.weight` then `fc.bias`).
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
    if policy == "layer_chunks_class_rows":
        head = k_max * feat_dim + k_max
        if sizes[-2:] != [k_max * feat_dim, k_max]:
            raise ValueError("layer_chunks_class_rows needs the classifier (k_max x feat_dim, k_max) as the last layers")
        body = build_splits(sizes[:-2], "chunk_within_layer", chunk_size)
        start = sum(sizes) - head
        rows = build_splits([k_max * feat_dim, k_max], "class_rows", 0, k_max, feat_dim)
        return body + [[start + i for i in r] for r in rows]
    raise ValueError(f"unknown split policy '{policy}' (use chunk_within_layer, class_rows or "
                     "layer_chunks_class_rows)")


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
    """x -> x * coeff. Tina's configs use G.pt's `normalizer: openai`, a fixed coefficient of 1.646 (DALL-E 2's
    scaling of CLIP latents; [Tina-repo `configs/train/cifar100_personalize10.yaml`]); `fit` is the project's
    alternative, 1 / std of the training parameters (config `generator.normalizer: std`)."""

    coeff: float

    OPENAI = 1.646  # G.pt's `normalizer: openai` coefficient (Tina's configs; sheet section 3)

    @classmethod
    def openai(cls) -> "ScalarNormalizer":
        return cls(cls.OPENAI)

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
