"""Expert trajectories for trajectory matching (MTT `buffer.py`, sheet section 8.2), and the flat-trajectory experts
of DATM/AutoPalette (`buffer/buffer_FTD.py`: GSAM, Zhuang et al. ICLR 2022).

An expert is a ConvNet trained on the real (normalised, optionally ZCA-whitened) training images with SGD and
DSA; its parameters are recorded as one flat vector at the start and after every epoch, so a trajectory of E
epochs is a [E + 1, P] tensor. Each expert is one rule output, shared by every distillation run of its dataset
and scale. With `experts.sam_rho` set, every minibatch takes a GSAM step (`gsam_direction`) on the same augmented
batch twice, as the official GSAM closure does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from repro.common.augment import DSA, DSAParams
from repro.common.nets import ConvNet, flatten_params
from repro.common.progress import progress
from repro.common.train import TrainSpec, soft_cross_entropy, train_classifier
from repro.autopalette.config import ExpertConfig, NetConfig


def make_net(net: NetConfig, num_classes: int, im_size: tuple[int, int], device) -> ConvNet:
    return ConvNet(3, num_classes, width=net.width, depth=net.depth_for(im_size), norm=net.norm, pooling=net.pooling,
                   im_size=im_size).to(device)


@dataclass
class Trajectory:
    params: Tensor               # [epochs + 1, P] float32 (CPU)
    seconds_per_epoch: float
    final_train_accuracy: float | None = None


def gsam_direction(g: Tensor, g_p: Tensor, alpha: float, eps: float = 1e-12) -> Tensor:
    """GSAM's update direction from the gradient g at w and g_p at the perturbed w + rho g / ||g|| (official
    `buffer/gsam/gsam.py::gradient_decompose`): the part of g orthogonal to g_p, v = g - cos(g, g_p) ||g|| g_p /
    ||g_p||, is subtracted with weight alpha: d = g_p - alpha v."""
    gn, pn = g.norm(), g_p.norm()
    cosine = (g * g_p).sum() / (gn * pn + eps)
    vertical = g - cosine * gn * g_p / (pn + eps)
    return g_p - alpha * vertical


def _gsam_epoch(net: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, batch: int, rho: float,
                alpha: float, augment, gen: torch.Generator) -> None:
    params = [p for p in net.parameters()]
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    for start in range(0, x.shape[0], batch):
        idx = perm[start:start + batch]
        xb = augment(x[idx]) if augment is not None else x[idx]
        yb = y[idx]
        g = torch.autograd.grad(soft_cross_entropy(net(xb), yb), params)
        flat_g = torch.cat([t.reshape(-1) for t in g])
        scale = rho / (flat_g.norm() + 1e-12)
        with torch.no_grad():
            for p, t in zip(params, g):
                p.add_(t, alpha=float(scale))                       # climb to w + e(w)
        g_p = torch.autograd.grad(soft_cross_entropy(net(xb), yb), params)
        d = gsam_direction(flat_g, torch.cat([t.reshape(-1) for t in g_p]), alpha)
        with torch.no_grad():
            offset = 0
            for p, t in zip(params, g):
                p.sub_(t, alpha=float(scale))                       # back to w
                p.grad = d[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        opt.step()


def train_expert(x: Tensor, y: Tensor, num_classes: int, net_cfg: NetConfig, cfg: ExpertConfig,
                 dsa: DSAParams, seed: int) -> Trajectory:
    """Train one expert on (x, y) — network inputs already preprocessed — recording its flat parameters."""
    torch.manual_seed(seed)
    net = make_net(net_cfg, num_classes, tuple(x.shape[2:]), x.device)
    snapshots = [flatten_params(net).cpu()]
    gen = torch.Generator().manual_seed(seed)
    spec = TrainSpec(cfg.epochs, cfg.lr, cfg.batch_size, cfg.momentum, cfg.weight_decay)
    augment = DSA(dsa, seed=seed) if cfg.dsa else None
    t0 = time.perf_counter()
    if cfg.sam_rho is None:
        train_classifier(net, x, y, spec, augment=augment, generator=gen,
                         on_epoch_end=lambda _e, n: snapshots.append(flatten_params(n).cpu()),
                         desc=f"expert seed {seed}")
    else:
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        net.train()
        for _ in progress(range(cfg.epochs), desc=f"GSAM expert seed {seed}", total=cfg.epochs):
            _gsam_epoch(net, opt, x, y, cfg.batch_size, cfg.sam_rho, cfg.sam_alpha, augment, gen)
            snapshots.append(flatten_params(net).cpu())
    elapsed = time.perf_counter() - t0
    return Trajectory(torch.stack(snapshots), elapsed / max(1, cfg.epochs))
