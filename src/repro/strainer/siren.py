"""A stack of SIRENs evaluated together: every layer holds one weight matrix per network.

Layer `l` is a pair `(weight [M_l, in, out], bias [M_l, 1, out])`: `M_l` networks side by side. A forward pass is
one batched matmul per layer (`torch.baddbmm`), so M images are fitted as one computation instead of M loops.
Stacks of different sizes compose by broadcasting: a STRAINER network in training is an encoder stack of size 1
(shared by every image) followed by a decoder stack of size K (one head per training image), exactly the
`SharedINR` split of the first author's code (paper sheet section 1, [ALP] `alpine/models/strainer.py`).

Architecture and initialisation follow SIREN (Sitzmann et al. 2020) as the sheet records it for STRAINER
(section 1, "Initialisation (SIREN)"): sine activations sin(omega0 * (x W + b)) with omega0 = 30 in every sine layer,
first-layer weights U(-1/in, 1/in), every later weight U(-sqrt(6/in)/omega0, +sqrt(6/in)/omega0), the last layer
linear. Biases keep PyTorch's `nn.Linear` default U(-1/sqrt(in), 1/sqrt(in)), which SIREN's reference code does not
override (its `init_weights` touches only `.weight`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Layer = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class SirenSpec:
    """Shape of one SIREN: `n_layers` linear maps, the first `n_layers - 1` followed by a sine."""

    in_features: int = 2
    width: int = 256
    out_features: int = 3
    n_layers: int = 6
    omega0: float = 30.0

    def __post_init__(self) -> None:
        if self.n_layers < 2:
            raise ValueError(f"a SIREN needs at least 2 layers (one sine, one linear), got {self.n_layers}")

    def dims(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every layer."""
        sizes = [self.in_features] + [self.width] * (self.n_layers - 1) + [self.out_features]
        return list(zip(sizes[:-1], sizes[1:]))

    def with_out(self, out_features: int) -> "SirenSpec":
        return SirenSpec(self.in_features, self.width, out_features, self.n_layers, self.omega0)

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in self.dims())


def weight_bound(spec: SirenSpec, index: int) -> float:
    """Half-width of the uniform weight init of layer `index` (SIREN: 1/in first, sqrt(6/in)/omega0 after)."""
    fan_in = spec.dims()[index][0]
    return 1.0 / fan_in if index == 0 else math.sqrt(6.0 / fan_in) / spec.omega0


def network_seed(*keys: int) -> int:
    """A 63-bit seed for one network from (run seed, purpose, index...): draws for one purpose never shift another's."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def init_networks(spec: SirenSpec, seeds: Sequence[int], *, device=None, dtype=torch.float32) -> list[Layer]:
    """A stack of `len(seeds)` freshly initialised SIRENs; network i is drawn from its own generator `seeds[i]`.

    Per-network generators make network i identical whether it is initialised alone or inside a stack, which is what
    lets a batched fit reproduce fits done one image at a time.
    """
    per_net = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        layers = []
        for index, (fan_in, fan_out) in enumerate(spec.dims()):
            w_bound, b_bound = weight_bound(spec, index), 1.0 / math.sqrt(fan_in)
            w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * w_bound
            b = (torch.rand(1, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * b_bound
            layers.append((w, b))
        per_net.append(layers)
    return [(torch.stack([net[i][0] for net in per_net]).to(device=device, dtype=dtype),
             torch.stack([net[i][1] for net in per_net]).to(device=device, dtype=dtype))
            for i in range(spec.n_layers)]


def repeat_stack(layers: Sequence[Layer], n: int) -> list[Layer]:
    """Copy a stack of one network `n` times (e.g. a learned encoder, once per test image)."""
    for w, _ in layers:
        if w.shape[0] != 1:
            raise ValueError(f"repeat_stack expects a stack of one network, got {w.shape[0]}")
    return [(w.expand(n, -1, -1).clone(), b.expand(n, -1, -1).clone()) for w, b in layers]


def select(layers: Sequence[Layer], index: Sequence[int] | slice) -> list[Layer]:
    """The networks `index` of a stack (all layers)."""
    return [(w[index], b[index]) for w, b in layers]


def concat(stacks: Sequence[Sequence[Layer]]) -> list[Layer]:
    """Stack several stacks of the same architecture side by side."""
    return [(torch.cat([s[i][0] for s in stacks]), torch.cat([s[i][1] for s in stacks]))
            for i in range(len(stacks[0]))]


def _affine(x: Tensor, w: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    """scale * (x W + b), one fused batched matmul-add when the stack sizes agree."""
    if x.shape[0] == w.shape[0]:
        return torch.baddbmm(b, x, w, beta=scale, alpha=scale)
    out = torch.matmul(x, w) + b  # broadcast a shared stack (size 1) against K networks, or K against 1
    return out * scale if scale != 1.0 else out


def forward(layers: Sequence[Layer], coords: Tensor, omega0: float, n_sine: int | None = None) -> Tensor:
    """Evaluate stacked SIRENs on shared coordinates [P, in]; returns [M, P, out].

    `layers` may mix stack sizes 1 and M (a shared encoder before per-image heads). The first `n_sine` layers
    (default: all but the last) are followed by sin(omega0 * .); omega0 is folded into the matmul's alpha/beta.
    """
    n_sine = len(layers) - 1 if n_sine is None else n_sine
    x = coords.unsqueeze(0)
    for index, (w, b) in enumerate(layers):
        if index < n_sine:
            x = torch.sin(_affine(x, w, b, omega0))
        else:
            x = _affine(x, w, b)
    return x


def hidden_preactivations(layers: Sequence[Layer], coords: Tensor, omega0: float) -> list[Tensor]:
    """omega0 * (x W) of every layer after the first, without the bias: the quantity SIREN's init keeps at unit
    variance (Sitzmann et al. 2020, Sec. 3.2). Used by the initialisation tests."""
    out = []
    x = torch.sin(_affine(coords.unsqueeze(0), *layers[0], omega0))
    for w, b in layers[1:-1]:
        out.append(omega0 * torch.matmul(x, w))
        x = torch.sin(_affine(x, w, b, omega0))
    return out
