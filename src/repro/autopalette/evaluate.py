"""Evaluation protocol of distilled sets (sheet section 5; MTT/AutoPalette `evaluate_synset`).

`num_nets` freshly initialised ConvNets are trained on the stored (uint8) images, with SGD (momentum 0.9, weight
decay 5e-4), the learned learning rate of the distilled set (a fixed lr for real-image baselines), lr x0.1 at
epoch epochs//2 + 1, and DSA; each is tested at its final epoch on the test split (all of it, as the paper, or the
class-balanced subset `data.test_per_class` of a smoke block). We report the mean and the population standard
deviation (np.std, as the code) of the per-network accuracies, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from repro.common.augment import DSA, DSAParams
from repro.common.metrics.aggregate import mean_std
from repro.common.nets import make_architecture
from repro.common.progress import progress
from repro.common.train import TrainSpec, accuracy, train_classifier
from repro.autopalette.config import EvalConfig, NetConfig
from repro.autopalette.experts import make_net


@dataclass(frozen=True)
class EvalResult:
    accuracies: tuple[float, ...]     # percent, one per network

    @property
    def mean(self) -> float:
        return mean_std(self.accuracies).mean

    @property
    def std(self) -> float:
        """Population std (ddof 0), as the code's np.std."""
        return mean_std(self.accuracies, ddof=0).std


def evaluate_set(x: Tensor, targets: Tensor, lr: float, test_x: Tensor, test_y: Tensor, num_classes: int,
                 net_cfg: NetConfig, cfg: EvalConfig, dsa: DSAParams, seed: int, arch: str = "ConvNet") -> EvalResult:
    """Train `cfg.num_nets` fresh nets on (x, targets) — network inputs, labels or label logits — and test them.

    `arch`: "ConvNet" (the block's net) or a cross-architecture net of Table 6 ("VGG11", "AlexNet", "ResNet18"),
    trained with the same protocol."""
    accs = []
    for k in progress(range(cfg.num_nets), desc=f"evaluate {arch}", total=cfg.num_nets):
        net_seed = seed * 1000 + k
        torch.manual_seed(net_seed)
        if arch == "ConvNet":
            net = make_net(net_cfg, num_classes, tuple(x.shape[2:]), x.device)
        else:
            net = make_architecture(arch, x.shape[1], num_classes, tuple(x.shape[2:])).to(x.device)
        spec = TrainSpec.halfway(cfg.epochs, lr, cfg.batch_size, cfg.momentum, cfg.weight_decay)
        augment = DSA(dsa, seed=net_seed) if cfg.dsa else None
        train_classifier(net, x, targets, spec, augment=augment, generator=torch.Generator().manual_seed(net_seed))
        accs.append(100.0 * accuracy(net, test_x, test_y))
    return EvalResult(tuple(accs))
