"""Learning initialisations from training images: STRAINER encoders, a MAML initialisation, a fitted SIREN.

* STRAINER-N (sheet section 1, "Training"): one encoder (the first `shared_layers` sine layers) shared by N
  images, one decoder head per image, all trained jointly with Adam on the sum of per-image MSEs. Only the encoder
  is kept: at test time it is copied into a network whose head is freshly initialised (sheet section 1, "Test time").
* Meta-Learned (sheet section 5, Tancik et al. 2021, code `tancik/learnit`): MAML with `inner_steps` SGD steps per
  image and an outer Adam step per meta-batch, second-order (the inner gradients are differentiated through).
  The meta-batch is fitted as one stacked computation: the initialisation is broadcast to B networks whose inner
  updates differ per image. At test time the initialisation is used as learnit uses it (`meta_demo.ipynb` @ ac6dc3e,
  validation and test cells: `outer_step(..., params, inner_steps, opt_inner)` then render): first the
  `inner_steps` SGD steps at `inner_lr` that the MAML objective optimised for, then the ordinary fit (`adapt`).
  MAML optimises the loss *after* those steps, not the initialisation's own output: measured at smoke scale
  (32x32, width 64, 300 outer steps) the raw initialisation scored 12.0-12.7 dB on held-out faces, random
  SIRENs 10.8-13.3 dB, the mean training image 12.1-13.5 dB, and the initialisation after its 2 SGD steps
  24.6-28.8 dB. The paper's Fig. 2 reads 20-23 dB at iteration 0 for Meta-Learned 5K, above what any fixed
  image scores on these faces, so its iteration 0 is read as the adapted initialisation (an inference: UNVERIFIED).
* SIREN fine-tuned (Fig. 2 caption: "fitting on another face image"): a SIREN fitted to one training image; all of
  its weights initialise the test-time fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from repro.common.progress import progress
from repro.strainer.data import PM1
from repro.strainer.fit import Adam, fit_stack, per_image_mse, psnr_from_mse
from repro.strainer.siren import Layer, SirenSpec, forward, init_networks, network_seed

# Seed streams: one per purpose, so adding a purpose never changes another's draws.
STREAM_STRAINER, STREAM_META, STREAM_SOURCE, STREAM_TEST, STREAM_CONTROL = 11, 12, 13, 14, 15
STREAM_HYPERNET = 16


@dataclass
class Init:
    """A learned initialisation. kind 'encoder': the first `shared_layers` layers (a fresh head is added at test
    time); kind 'network': every layer. Layers are a stack of one network, on the CPU."""

    kind: str
    layers: list[Layer]
    shared_layers: int
    channels: int
    train_images: int
    seconds: float
    train_psnr: float
    adapt_steps: int = 0      # SGD steps at adapt_lr applied per test image before the fit (MAML's inner loop)
    adapt_lr: float = 0.0
    steps: int = 0            # optimiser updates of the learned weights (Table 5's "gradient updates")
    grad_evals: int = 0       # per-image gradient evaluations those updates needed (MAML: inner + outer per image)

    def to_dict(self) -> dict:
        return {**self.__dict__, "layers": [(w.cpu(), b.cpu()) for w, b in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "Init":
        return cls(**d)


def split_layers(layers: list[Layer], shared_layers: int) -> tuple[list[Layer], list[Layer]]:
    """(encoder, decoder): the first `shared_layers` layers and the rest."""
    if not 1 <= shared_layers < len(layers):
        raise ValueError(f"shared_layers must be in [1, {len(layers) - 1}], got {shared_layers}")
    return list(layers[:shared_layers]), list(layers[shared_layers:])


def strainer_layers(spec: SirenSpec, n_images: int, shared_layers: int, seed: int, device,
                    dtype=torch.float32) -> list[Layer]:
    """A STRAINER training network: one shared encoder (stack of 1) followed by `n_images` decoder heads."""
    encoder, _ = split_layers(init_networks(spec, [network_seed(seed, STREAM_STRAINER, 0)], device=device, dtype=dtype),
                              shared_layers)
    heads = init_networks(spec, [network_seed(seed, STREAM_STRAINER, 1 + k) for k in range(n_images)],
                          device=device, dtype=dtype)
    return encoder + split_layers(heads, shared_layers)[1]


def train_strainer(spec: SirenSpec, images: Tensor, coords: Tensor, *, shared_layers: int, iters: int, lr: float,
                   seed: int, desc: str, value_range=PM1) -> Init:
    """Train a shared encoder on `images` [N, P, C] jointly with N heads; return the encoder."""
    layers = strainer_layers(spec, images.shape[0], shared_layers, seed, coords.device, coords.dtype)
    res = fit_stack(layers, coords, images, images, omega0=spec.omega0, iters=iters, lr=lr, desc=desc,
                    value_range=value_range)
    return Init("encoder", res.layers[:shared_layers], shared_layers, images.shape[-1], images.shape[0],
                res.seconds, float(res.psnr[-1].mean()), steps=iters, grad_evals=iters * images.shape[0])


def fit_source_siren(spec: SirenSpec, image: Tensor, coords: Tensor, *, iters: int, lr: float, seed: int,
                     value_range=PM1) -> Init:
    """A SIREN fitted to one image [1, P, C] (the 'SIREN fine-tuned' baseline's starting point)."""
    layers = init_networks(spec, [network_seed(seed, STREAM_SOURCE)], device=coords.device, dtype=coords.dtype)
    res = fit_stack(layers, coords, image, image, omega0=spec.omega0, iters=iters, lr=lr, desc="SIREN source fit",
                    value_range=value_range)
    return Init("network", res.layers, spec.n_layers, image.shape[-1], 1, res.seconds, float(res.psnr[-1, 0]),
                steps=iters, grad_evals=iters)


def _inner_adapt(theta: list[Tensor], target: Tensor, coords: Tensor, omega0: float, steps: int, lr: float,
                 create_graph: bool, observe=None) -> list[Tensor]:
    """`steps` SGD steps from `theta` (stacks of 1 or B) for each image of `target` [B, ...]; returns a stack of B.
    The loss of network i is its own mean squared error (against `observe(output)` if given)."""
    batch = target.shape[0]
    phi = [t.expand(batch, -1, -1) for t in theta]
    observe = observe or (lambda out: out)
    for _ in range(steps):
        layers = [(phi[2 * i], phi[2 * i + 1]) for i in range(len(phi) // 2)]
        loss = per_image_mse(observe(forward(layers, coords, omega0)), target).sum()
        grads = torch.autograd.grad(loss, phi, create_graph=create_graph)
        phi = [p - lr * g for p, g in zip(phi, grads)]
    return phi


def meta_learn(spec: SirenSpec, images: Tensor, coords: Tensor, *, outer_iters: int, outer_lr: float,
               inner_lr: float, inner_steps: int, meta_batch: int, seed: int, desc: str = "MAML",
               value_range=PM1) -> Init:
    """MAML over `images` [N, P, C]: the outer loss is the mean post-adaptation MSE of a meta-batch."""
    theta = [t.clone().requires_grad_(True) for layer in
             init_networks(spec, [network_seed(seed, STREAM_META)], device=coords.device, dtype=coords.dtype)
             for t in layer]
    opt = Adam(theta, lr=outer_lr)
    gen = torch.Generator().manual_seed(network_seed(seed, STREAM_META, 1))
    batch = min(meta_batch, images.shape[0])
    outer_hist = torch.empty(outer_iters, device=coords.device, dtype=torch.float64)
    t0 = time.perf_counter()
    for step in progress(range(outer_iters), desc=desc, total=outer_iters):
        idx = torch.randperm(images.shape[0], generator=gen)[:batch].to(images.device)
        target = images[idx]
        phi = _inner_adapt(theta, target, coords, spec.omega0, inner_steps, inner_lr, create_graph=True)
        layers = [(phi[2 * i], phi[2 * i + 1]) for i in range(len(phi) // 2)]
        outer = per_image_mse(forward(layers, coords, spec.omega0), target)
        outer_hist[step] = outer.detach().mean()
        opt.zero_grad()
        outer.mean().backward()
        opt.step()
    seconds = time.perf_counter() - t0
    final = float(psnr_from_mse(outer_hist[-20:].mean().item(), value_range))
    layers = [(theta[2 * i].detach(), theta[2 * i + 1].detach()) for i in range(len(theta) // 2)]
    return Init("network", layers, spec.n_layers, images.shape[-1], images.shape[0], seconds, final,
                adapt_steps=inner_steps, adapt_lr=inner_lr, steps=outer_iters,
                grad_evals=outer_iters * batch * (inner_steps + 1))


def adapt(layers: list[Layer], observed: Tensor, coords: Tensor, omega0: float, steps: int, lr: float,
          observe=None) -> list[Layer]:
    """A MAML initialisation's test-time inner loop: `steps` plain SGD steps at `lr` on each image of `observed`
    [M, ...], from a stack of 1 or M networks; returns the adapted stack of M (detached)."""
    if steps <= 0:
        return list(layers)
    with torch.enable_grad():
        theta = [t.detach().requires_grad_(True) for layer in layers for t in layer]
        phi = _inner_adapt(theta, observed, coords, omega0, steps, lr, create_graph=False, observe=observe)
    return [(phi[2 * i].detach(), phi[2 * i + 1].detach()) for i in range(len(phi) // 2)]
