"""Fitting stacks of SIRENs to images with Adam, all networks in one batched computation.

The loss is the *sum over networks of each network's mean squared error*, as in STRAINER's training loss
(paper sheet section 1, [ALP] `StrainerLoss`: `((x - y)**2).mean(dim=[2,3,4]).sum()`). With a sum, network i's
gradient is exactly the gradient of its own loss, and Adam acts elementwise, so fitting M images in one stack follows
the same trajectory as M separate fits (tests/strainer/test_batched.py checks it). Full-batch: every pixel in every
step (sheet section 2, "Batch").

PSNR is recorded at every iteration without a host sync: the per-network MSE of the (clamped) output against the
clean image is written into a preallocated device tensor, read back once at the end. Iteration t is the network
after t Adam updates (t = 0 is the initialisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from repro.common.errors import UserError
from repro.common.progress import progress
from repro.strainer.siren import Layer, forward

Observe = Callable[[Tensor], Tensor]


@dataclass
class FitResult:
    """What a fit leaves: the trained stack, PSNR per iteration [iters + 1, M] (dB, images in [0, 1]), the final
    output [M, P, C] (pixel range of the targets), and the wall time of the optimisation loop."""

    layers: list[Layer]
    psnr: np.ndarray
    output: Tensor
    seconds: float
    snapshots: dict[int, Tensor] = field(default_factory=dict)


class Adam:
    """Adam (Kingma & Ba 2015; PyTorch's defaults: betas 0.9/0.999, eps 1e-8, no weight decay) over a few large
    tensors with PyTorch's multi-tensor `_foreach` kernels. Same update as `torch.optim.Adam` (a test checks it),
    without the optimiser base class, whose first construction imports TorchDynamo (seconds per process).
    """

    def __init__(self, params: Sequence[Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.m, grads, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, (1 - b2**self.t) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, -self.lr / (1 - b1**self.t))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def per_image_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per network over pixels and channels: [M, P, C] x [M, P, C] -> [M]."""
    return (a - b).square().mean(dim=(1, 2))


def psnr_from_mse(mse: Tensor | np.ndarray, value_range=(-1.0, 1.0)):
    """PSNR in dB with peak 1 for images in [0, 1], from an MSE measured on images in `value_range` (an MSE on
    [-1, 1] is 4x the MSE of the same images on [0, 1])."""
    span = float(value_range[1]) - float(value_range[0])
    return -10.0 * np.log10(np.asarray(mse, dtype=np.float64) / span**2)


def fit_stack(
    layers: Sequence[Layer],
    coords: Tensor,
    observed: Tensor,
    clean: Tensor,
    *,
    omega0: float,
    iters: int,
    lr: float,
    observe: Observe | None = None,
    snapshot_iters: Sequence[int] = (),
    desc: str = "fit",
    value_range: tuple[float, float] = (-1.0, 1.0),
    render: Callable[[Sequence[Layer], Tensor], Tensor] | None = None,
) -> FitResult:
    """Optimise every tensor of `layers` (copied, so the caller's stack is untouched) with Adam at `lr`.

    `observed` [M, ...] is what the loss compares `observe(output)` with (the image itself, a noisy copy, a
    downsampled copy); `clean` [M, P, C] is the ground truth the PSNR is measured against, both in `value_range`
    (outputs are clamped to it for the PSNR). The outputs at `snapshot_iters` are kept (for figures of the fit's
    progress). `render(layers, coords)` evaluates the stack (default: SIREN's `forward` with `omega0`; the
    hypernetwork baselines pass their ReLU hyponet).
    """
    render = render or (lambda layers_, coords_: forward(layers_, coords_, omega0))
    params = [t.detach().clone().requires_grad_(True) for layer in layers for t in layer]
    stack = [(params[2 * i], params[2 * i + 1]) for i in range(len(layers))]
    observe = observe or (lambda out: out)
    opt = Adam(params, lr=lr)
    n_out = max(w.shape[0] for w, _ in layers)
    mse_hist = torch.empty(iters + 1, n_out, device=coords.device, dtype=torch.float64)
    lo, hi = value_range

    snap_at, snapshots = set(snapshot_iters), {}
    t0 = time.perf_counter()
    for step in progress(range(iters), desc=desc, total=iters):
        out = render(stack, coords)
        with torch.no_grad():
            mse_hist[step] = per_image_mse(out.clamp(lo, hi), clean)
            if step in snap_at:
                snapshots[step] = out.detach().clone()
        loss = per_image_mse(observe(out), observed).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = render(stack, coords)
        mse_hist[iters] = per_image_mse(out.clamp(lo, hi), clean)
    if iters in snap_at:
        snapshots[iters] = out.detach().clone()
    if coords.device.type == "cuda":
        torch.cuda.synchronize(coords.device)
    seconds = time.perf_counter() - t0

    mse = mse_hist.cpu().numpy()
    if not np.isfinite(mse).all():
        first = int(np.argmax(~np.isfinite(mse).all(axis=1)))
        raise UserError(f"{desc}: the loss became NaN/inf at iteration {first}; lower the learning rate in "
                        f"config/strainer.yaml or check the input images")
    return FitResult(layers=[(w.detach(), b.detach()) for w, b in stack], psnr=psnr_from_mse(mse, value_range),
                     output=out.detach(), seconds=seconds, snapshots=snapshots)


def fit_in_chunks(
    make_layers: Callable[[slice], list[Layer]],
    n: int,
    chunk: int,
    coords: Tensor,
    observed: Tensor,
    clean: Tensor,
    **kwargs,
) -> FitResult:
    """`fit_stack` over networks [0, n) in groups of at most `chunk` (0: all at once), to bound device memory.

    Networks are independent, so chunking changes nothing but the peak memory and the speed.
    """
    chunk = n if chunk <= 0 else chunk
    desc = kwargs.pop("desc", "fit")
    parts = []
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        label = desc if chunk >= n else f"{desc} [{part.start}:{part.stop}]"
        parts.append(fit_stack(make_layers(part), coords, observed[part], clean[part], desc=label, **kwargs))
    return FitResult(
        layers=[(torch.cat([p.layers[i][0] for p in parts]), torch.cat([p.layers[i][1] for p in parts]))
                for i in range(len(parts[0].layers))],
        psnr=np.concatenate([p.psnr for p in parts], axis=1),
        output=torch.cat([p.output for p in parts]),
        seconds=sum(p.seconds for p in parts),
        snapshots={t: torch.cat([p.snapshots[t] for p in parts]) for t in parts[0].snapshots},
    )
