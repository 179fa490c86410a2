"""Train an image classifier on in-memory tensors and measure its test accuracy.

One loop serves expert training (trajectory matching), the evaluation of distilled sets and the small selection
networks. Data are tensors already on the device (distilled sets and CIFAR subsets fit); each epoch is a
random permutation cut into minibatches. No per-step host synchronisation: the loss is accumulated on the device
and read once per epoch only when a callback asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.common.metrics.classification import accuracy as top1
from repro.common.progress import progress


@dataclass(frozen=True)
class TrainSpec:
    """SGD schedule. `decay_at`: epochs at which the lr is multiplied by `decay` (empty: constant lr)."""

    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_at: tuple[int, ...] = ()
    decay: float = 0.1

    @staticmethod
    def halfway(epochs: int, lr: float, batch_size: int, momentum: float = 0.9, weight_decay: float = 5e-4):
        """The distillation evaluation schedule: lr x0.1 once, at epoch epochs//2 + 1 (MTT `evaluate_synset`)."""
        return TrainSpec(epochs, lr, batch_size, momentum, weight_decay, (epochs // 2 + 1,), 0.1)


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy against class indices ([N] int) or against soft targets ([N, K] logits, softmaxed here)."""
    if target.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(logits, target)
    return -(F.softmax(target, dim=1) * F.log_softmax(logits, dim=1)).sum(1).mean()


def train_classifier(net: nn.Module, x: Tensor, y: Tensor, spec: TrainSpec, *,
                     augment: Callable[[Tensor], Tensor] | None = None,
                     generator: torch.Generator | None = None,
                     on_epoch_end: Callable[[int, nn.Module], None] | None = None,
                     desc: str | None = None) -> nn.Module:
    """Train `net` in place on (x, y) with SGD; `y` holds class indices or soft-label logits.

    `on_epoch_end(epoch, net)` runs after every epoch (epoch counts from 1), e.g. to record an expert trajectory.
    """
    opt = torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    n = x.shape[0]
    net.train()
    epochs = range(1, spec.epochs + 1)
    for epoch in (progress(epochs, desc=desc, total=spec.epochs) if desc else epochs):
        if epoch in spec.decay_at:
            for group in opt.param_groups:
                group["lr"] *= spec.decay
        perm = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, spec.batch_size):
            idx = perm[start:start + spec.batch_size]
            xb = x[idx]
            if augment is not None:
                xb = augment(xb)
            loss = soft_cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, net)
    return net


# The test pass of an evaluation (10,000 CIFAR test images through a width-16 ConvNetD3, one CPU thread) took
# 2.53 s in batches of 1,000 and 1.69 s in batches of 256 (medians of 5 interleaved rounds, issue 15): a batch's
# activations then stay in the CPU's caches. Per-sample layers only (eval mode), so the logits are the same bits at
# either batch size (checked under AVX-512 and AVX2 kernels, 1 and 2 threads; tests/autopalette/test_blocks.py checks
# the predictions).
PREDICT_BATCH = 256


@torch.no_grad()
def predict(net: nn.Module, x: Tensor, batch_size: int = PREDICT_BATCH) -> Tensor:
    """Predicted class indices for `x` (evaluation mode, no autograd graph), in batches of `batch_size`."""
    was_training = net.training
    net.eval()
    out = torch.cat([net(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])
    net.train(was_training)
    return out


def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = PREDICT_BATCH) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of `net` on (x, y), via the shared metric."""
    return top1(predict(net, x, batch_size), y)
