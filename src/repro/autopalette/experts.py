"""Expert trajectories for trajectory matching (MTT `buffer.py`, sheet section 8.2).

An expert is a ConvNet trained on the real (normalised, optionally ZCA-whitened) training images with SGD and
DSA; its parameters are recorded as one flat vector at the start and after every epoch, so a trajectory of E
epochs is a [E + 1, P] tensor. Each expert is one rule output, shared by every distillation run of its dataset
and scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from repro.common.augment import DSA, DSAParams
from repro.common.nets import ConvNet, flatten_params
from repro.common.train import TrainSpec, train_classifier
from repro.autopalette.config import ExpertConfig, NetConfig


def make_net(net: NetConfig, num_classes: int, im_size: tuple[int, int], device) -> ConvNet:
    return ConvNet(3, num_classes, width=net.width, depth=net.depth, norm=net.norm, pooling=net.pooling,
                   im_size=im_size).to(device)


@dataclass
class Trajectory:
    params: Tensor               # [epochs + 1, P] float32 (CPU)
    seconds_per_epoch: float
    final_train_accuracy: float | None = None


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
    train_classifier(net, x, y, spec, augment=augment, generator=gen,
                     on_epoch_end=lambda _e, n: snapshots.append(flatten_params(n).cpu()),
                     desc=f"expert seed {seed}")
    elapsed = time.perf_counter() - t0
    return Trajectory(torch.stack(snapshots), elapsed / max(1, cfg.epochs))
