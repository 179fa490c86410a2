"""Tina's generator: a diffusion transformer over parameter tokens with text tokens as conditioning.

Token layout as in the Tina code (G.pt-style, no cross-attention; paper sheet section 3): the noised parameters cut
into tokens, each projected by its own linear encoder; one token per class slot carrying that class name's text
embedding; one timestep token (frequency embedding of t). A learned position embedding is added, a stack of pre-norm
transformer blocks (attention + 4x GELU MLP) mixes the tokens, and per-token linear decoders read the parameter tokens
back into a flat x0 prediction ([Tina-repo `Gpt/models/transformer.py`: `GPT`, `FrequencyEmbedder`, `Gpt.forward`]).

Conditioning layout (`generator.conditioning`):

* `tina`: each class slot has its own bias-free projection of its text embedding, and one layer norm is applied to
  every input token (parameter, text and timestep tokens), as in Tina's `GPT` (issue 13, point 4). Tina feeds raw
  CLIP `encode_text` outputs; the project's text encoders return unit-norm rows (`repro.common.text`), which only
  rescales each embedding.
* `shared` (the project's ablation): all slots share one projection with bias, and the layer norm sees only the
  parameter tokens.

Other deviations, all small: under `shared`, text tokens share one linear projection (slots are exchangeable under the permutation
augmentation, and a shared map is what lets an unseen class name be read at all); unused class slots (tasks smaller
than k_max) carry a learned "empty slot" token; with `share_param_proj` (the `class_rows` split, equal-size tokens)
parameter tokens share one encoder and one decoder; with the class-row splits (`class_rows`,
`layer_chunks_class_rows`) slot k's classifier token and text token share a slot embedding (without it a smoke-size
head generator sat on a loss plateau of ~0.31 for 1000 steps; with it the loss fell to ~0.02 in 600). The unconditional (p-diff-style) baseline is the same network without text tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repro.tina.params import TokenLayout


class FrequencyEmbedder(nn.Module):
    """Scalar -> [sin(f x), cos(f x), x] with f = 2^linspace(0, max_freq_log2, n) (G.pt)."""

    def __init__(self, num_frequencies: int, max_freq_log2: float):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.linspace(0, max_freq_log2, num_frequencies), persistent=False)
        self.dim = 2 * num_frequencies + 1

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().unsqueeze(-1)
        scaled = x * self.freqs
        return torch.cat([scaled.sin(), scaled.cos(), x], dim=-1)


class ParamDiT(nn.Module):
    def __init__(self, layout: TokenLayout, k_max: int, text_dim: int | None, n_embd: int, n_layer: int,
                 n_head: int, num_frequencies: int = 128, max_freq_log2: float = 14.0,
                 share_param_proj: bool = False, conditioning: str = "shared", slot_tokens: bool = False):
        super().__init__()
        if conditioning not in ("tina", "shared"):
            raise ValueError(f"unknown conditioning layout '{conditioning}' (use tina or shared)")
        self.conditioning = conditioning
        self.layout = layout
        self.conditional = text_dim is not None
        n_proj = 1 if share_param_proj else layout.n_tokens
        self.in_proj = nn.Parameter(torch.randn(n_proj, layout.width, n_embd) * 0.02)
        self.out_proj = nn.Parameter(torch.randn(n_proj, n_embd, layout.width) * 0.02)
        self.ln_in = nn.LayerNorm(n_embd)
        if self.conditional:
            if conditioning == "tina":
                self.slot_proj = nn.Parameter(torch.randn(k_max, text_dim, n_embd) * 0.02)
            else:
                self.text_proj = nn.Linear(text_dim, n_embd)
            self.empty_slot = nn.Parameter(torch.randn(n_embd) * 0.02)
        self.t_embed = FrequencyEmbedder(num_frequencies, max_freq_log2)
        self.t_proj = nn.Linear(self.t_embed.dim, n_embd)
        n_tokens = layout.n_tokens + (k_max if self.conditional else 0) + 1
        self.pos_emb = nn.Parameter(torch.zeros(1, n_tokens, n_embd))
        # With one parameter token per class slot, slot k's parameter token and text token share a slot embedding,
        # so attention can pair them from the first step (with only zero-initialised position embeddings the pairing
        # must be learnt first, which stalls small generators on a plateau).
        self.slot_aligned = slot_tokens and self.conditional
        self.k_max = k_max
        if self.slot_aligned:
            self.slot_emb = nn.Parameter(torch.randn(k_max, n_embd))
        block = nn.TransformerEncoderLayer(n_embd, n_head, 4 * n_embd, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(n_embd)
        for m in self.modules():  # G.pt/minGPT initialisation
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, t: Tensor, text: Tensor | None = None, slot_mask: Tensor | None = None) -> Tensor:
        """x: [B, numel] noised normalised parameters; t: [B] timesteps; text: [B, k_max, text_dim] embeddings of
        the class in each slot; slot_mask: [B, k_max], False for unused slots. Returns the x0 prediction [B, numel]."""
        tokens = self.layout.to_tokens(x)                                       # [B, P, C]
        h = torch.einsum("bpc,pcd->bpd", tokens, self.in_proj.expand(tokens.shape[1], -1, -1))
        if self.conditioning == "shared":
            h = self.ln_in(h)
        if self.slot_aligned:  # the last k_max parameter tokens are the classifier's class rows
            h = torch.cat([h[:, :-self.k_max], h[:, -self.k_max:] + self.slot_emb], dim=1)
        parts = [h]
        if self.conditional:
            if text is None or slot_mask is None:
                raise ValueError("a conditional ParamDiT needs text embeddings and a slot mask")
            c = (torch.einsum("bke,ked->bkd", text, self.slot_proj) if self.conditioning == "tina"
                 else self.text_proj(text))
            c = torch.where(slot_mask.unsqueeze(-1), c, self.empty_slot.to(c.dtype))
            parts.append(c + self.slot_emb if self.slot_aligned else c)
        parts.append(self.t_proj(self.t_embed(t)).unsqueeze(1))
        seq = torch.cat(parts, dim=1)
        if self.conditioning == "tina":
            seq = self.ln_in(seq)
        z = self.ln_f(self.blocks(seq + self.pos_emb))
        p = self.layout.n_tokens
        out = torch.einsum("bpd,pdc->bpc", z[:, :p], self.out_proj.expand(p, -1, -1))
        return self.layout.from_tokens(out)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: no decay on biases, norms and the position/empty-slot embeddings (G.pt's split)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            skip = (p.ndim < 2 or name in ("pos_emb", "empty_slot", "slot_emb") or ".norm" in name
                    or name.startswith("ln_"))
            (no_decay if skip else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
