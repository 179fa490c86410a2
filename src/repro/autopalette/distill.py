"""Trajectory matching (MTT) with a learnable student learning rate, and AutoPalette on top of it.

One outer iteration (MTT `distill.py`, sheet section 8.2; AutoPalette Eq. 13-14):
  1. pick an expert and a start epoch t ~ U{min_start, ..., upper - 1} (upper = max_start, or the widening
     window of DATM, `start_epoch_upper_bound`); theta* = trajectory[t], target = trajectory[t + expert_epochs];
  2. AutoPalette only: the palette net maps the synthetic images to per-pixel bucket probabilities m and the images
     are colour-reduced with the *soft* assignment (differentiable);
  3. run `syn_steps` SGD steps of a student network from theta* on (DSA-augmented) minibatches of the synthetic
     set, with the learnable lr, keeping the graph (create_graph) so the loss reaches pixels, lr and palette net;
  4. loss = ||theta_N - target||^2 / ||theta* - target||^2; AutoPalette adds alpha L_m + beta L_b + gamma L_a,
     computed on a detached random subset of the images so that the images are driven by the matching loss only
     (Eq. 14);
  5. SGD steps on images, lr, palette net (and soft labels in the code's DATM variant) -- with DATM's threshold,
     only when the matching loss is at most `threshold`; the lr decays count only those updating iterations.

The student's parameters are a single flat tensor replaced at each step (theta <- theta - lr * g): the
network reads them as views (`ConvNet.forward_flat`), and expert snapshots are read in place; nothing is copied
per step beyond what autograd must keep for the backward pass.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from repro.common.augment import DSA, DSAParams
from repro.common.errors import UserError
from repro.common.nets import ConvNet
from repro.common.progress import progress
from repro.common.train import soft_cross_entropy
from repro.autopalette.config import DistillConfig, PaletteConfig
from repro.autopalette.data import Preprocess
from repro.autopalette.palette import (PaletteNet, alignment_loss, hard_assign, hard_quantize, max_colour_loss,
                                       median_cut, palette_balance_loss, soft_quantize)


@dataclass
class DistillResult:
    images: Tensor                        # learned images, normalised space [N, 3, H, W]
    labels: Tensor                        # hard labels [N]
    label_logits: Tensor | None           # learned soft labels (DATM variant) or None
    syn_lr: float
    palette_net: PaletteNet | None
    losses: list[float] = field(default_factory=list)   # matching loss per iteration
    seconds_per_iteration: float = math.nan
    updates: int = 0                      # iterations that passed the threshold gate and updated


def _palette_aux_losses(pal: PaletteNet, images: Tensor, pre: Preprocess, pcfg: PaletteConfig, n_colors: int,
                        rng: random.Random, gen: torch.Generator) -> Tensor:
    """alpha L_m + beta L_b + gamma L_a on a random subset of the (detached) synthetic images."""
    n = images.shape[0]
    sub = sorted(rng.sample(range(n), min(n, pcfg.loss_images)))
    x = images.detach()[sub]
    m = pal(x)
    loss = pcfg.alpha * max_colour_loss(m) + pcfg.beta * palette_balance_loss(m)
    if pcfg.gamma:
        # Host round trip: PIL's Median Cut, as the code, on the 8-bit rendering of the images. (The official
        # get_index_map un-normalises with the CIFAR-10 mean/std even when the images are ZCA-whitened; we invert
        # the map actually used.)
        index, _ = median_cut(pre.to_uint8(x), n_colors)
        target = torch.from_numpy(index.astype(np.int64)).to(images.device)
        loss = loss + pcfg.gamma * alignment_loss(m, target, pcfg.sample_ratio, generator=gen)
    return loss


def start_epoch_upper_bound(it: int, cfg: DistillConfig) -> int:
    """Exclusive upper bound of the start epoch at iteration `it` (0-based).

    DATM's widening window (official `distill_quant.py`, `Sequential_Generation`): current + int((max - current) *
    it / expansion_end), capped at max; `max_start_epoch` throughout when `current_max_start_epoch` is null.
    """
    if cfg.current_max_start_epoch is None:
        return cfg.max_start_epoch
    grown = cfg.current_max_start_epoch + int((cfg.max_start_epoch - cfg.current_max_start_epoch) * it
                                              / cfg.expansion_end_epoch)
    return min(grown, cfg.max_start_epoch)


def accepts_update(match: float, threshold: float | None) -> bool:
    """DATM's gate (official `if grand_loss <= args.threshold`): update only when the matching loss is <= threshold."""
    return threshold is None or match <= threshold


def decay_step(iterations: int, fraction: float | None) -> int | None:
    """The updating step from which an lr is x0.1: floor(iterations * fraction) (official Iteration // 3 for the
    images, // 2 for the palette net, as LambdaLR(lambda k: 1 if k < Iteration // 3 else 0.1)); None: no decay."""
    if fraction is None:
        return None
    return math.floor(iterations * fraction + 1e-6)


@torch.no_grad()
def initial_label_logits(net: ConvNet, final_params: Tensor, inputs: Tensor, batch: int = 256) -> Tensor:
    """Soft-label init of the official code for graph-cut/real inits: the logits of one expert's final snapshot
    (`buffer[0][-1]`) on the initial synthetic images (network inputs)."""
    return torch.cat([net.forward_flat(final_params, inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def distill(init_images: Tensor, init_labels: Tensor, trajectories: Tensor, net: ConvNet, pre: Preprocess,
            cfg: DistillConfig, dsa: DSAParams, seed: int, *, palette: PaletteConfig | None = None,
            n_colors: int = 256, label_params: Tensor | None = None, label_init: Tensor | None = None,
            checkpoint_every: int | None = None, on_checkpoint: Callable[[int, DistillResult], None] | None = None,
            desc: str = "distill") -> DistillResult:
    """Distil from `trajectories` [n_experts, T, P] (on the images' device) starting from `init_images`.

    `palette` given: AutoPalette with `n_colors` colours; None: plain MTT. `label_params`: the final snapshot of
    one expert's full trajectory, for the soft-label init (`cfg.soft_labels`; default: the last loaded snapshot of
    expert 0, which is the final one only when the whole trajectory was loaded). `label_init`: soft-label logits
    to start from instead (DATM's predicted-correctly init). `on_checkpoint(it, state)` is called before iteration
    0, every `checkpoint_every` iterations and after the last (the official code's evaluation points, eval_it).
    """
    device = init_images.device
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    images = init_images.detach().clone().requires_grad_(True)
    syn_lr = torch.tensor(cfg.lr_teacher, device=device, requires_grad=True)
    opt_img = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum_img)
    opt_lr = torch.optim.SGD([syn_lr], lr=cfg.lr_lr, momentum=cfg.momentum_lr)
    opts = [opt_img, opt_lr]
    pal = None
    if palette is not None:
        pal = PaletteNet(n_colors, images.shape[1], palette.hidden).to(device)
        opt_pal = torch.optim.SGD(pal.parameters(), lr=palette.lr, momentum=palette.momentum,
                                  weight_decay=palette.weight_decay)
        opts.append(opt_pal)
    label_logits = None
    targets: Tensor = init_labels
    if cfg.soft_labels:
        if label_init is not None:
            label_logits = label_init.detach().clone().to(device).requires_grad_(True)
        else:
            final = label_params if label_params is not None else trajectories[0, -1]
            label_logits = initial_label_logits(net, final.to(device), pre.net_input(init_images)
                                                ).requires_grad_(True)
        opts.append(torch.optim.SGD([label_logits], lr=cfg.lr_y, momentum=cfg.momentum_y))
        targets = label_logits
    aug = DSA(dsa, seed=seed) if cfg.dsa else None
    n = images.shape[0]
    batch = cfg.batch_syn or n
    n_experts = trajectories.shape[0]
    if trajectories.shape[1] < cfg.max_start_epoch + cfg.expert_epochs:
        raise UserError(f"{desc}: trajectories hold {trajectories.shape[1] - 1} epochs, max_start_epoch + "
                        f"expert_epochs need {cfg.max_start_epoch + cfg.expert_epochs - 1}; train longer experts")
    img_decay = decay_step(cfg.iterations, cfg.img_lr_decay_at)
    pal_decay = decay_step(cfg.iterations, palette.lr_decay_at) if palette is not None else None
    losses: list[Tensor] = []
    accepted = 0
    t_start = None
    bar = progress(range(cfg.iterations), desc=desc, total=cfg.iterations)
    def snapshot() -> DistillResult:
        return DistillResult(images.detach(), init_labels, None if label_logits is None else label_logits.detach(),
                             float(syn_lr.detach()), pal)

    paused = 0.0                                   # time spent in checkpoint evaluations, not in distillation
    for it in bar:
        if on_checkpoint is not None and checkpoint_every and it % checkpoint_every == 0:
            t0 = time.perf_counter()
            on_checkpoint(it, snapshot())
            paused += time.perf_counter() - t0 if t_start is not None else 0.0
        if it == 1:  # time the steady state, after the first (warm-up) iteration
            _sync(device)
            t_start = time.perf_counter()
        e = rng.randrange(n_experts)
        t = rng.randrange(cfg.min_start_epoch, start_epoch_upper_bound(it, cfg))
        start = trajectories[e, t]
        target = trajectories[e, t + cfg.expert_epochs]

        syn = soft_quantize(images, pal(images))[0] if pal is not None else images
        inputs = pre.net_input(syn)
        theta = start.detach().requires_grad_(True)
        perm = torch.randperm(n, generator=gen).to(device) if batch < n else None
        for step in range(cfg.syn_steps):
            if perm is not None:
                lo = (step * batch) % n
                if lo + batch > n:
                    perm, lo = torch.randperm(n, generator=gen).to(device), 0
                idx = perm[lo:lo + batch]
                xb, yb = inputs[idx], targets[idx]
            else:
                xb, yb = inputs, targets
            if aug is not None:
                xb = aug(xb)
            ce = soft_cross_entropy(net.forward_flat(theta, xb), yb)
            grad, = torch.autograd.grad(ce, theta, create_graph=True)
            theta = theta - syn_lr * grad
        match = (theta - target).pow(2).sum() / (start - target).pow(2).sum()
        losses.append(match.detach())
        # The gate needs the loss on the host (as the official code's comparison does); without a gate the sync
        # is skipped. A rejected iteration updates nothing, so its backward pass is skipped too.
        if cfg.threshold is None or accepts_update(float(match.detach()), cfg.threshold):
            loss = match
            if pal is not None:
                loss = loss + _palette_aux_losses(pal, images, pre, palette, n_colors, rng, gen)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            _set_lr(opt_img, cfg.lr_img * (0.1 if img_decay is not None and accepted >= img_decay else 1.0))
            if pal is not None:
                _set_lr(opt_pal, palette.lr * (0.1 if pal_decay is not None and accepted >= pal_decay else 1.0))
            for opt in opts:
                opt.step()
            accepted += 1
        if (it + 1) % 10 == 0 or it + 1 == cfg.iterations:
            value = float(losses[-1])                   # one host sync every 10 iterations
            if not math.isfinite(value):
                raise UserError(f"distillation diverged: the matching loss is {value} at iteration {it + 1}; "
                                f"lower distill.lr_img or distill.lr_lr in config/autopalette.yaml")
            bar.set_postfix(match=f"{value:.4f}", lr=f"{float(syn_lr.detach()):.2e}", updates=accepted,
                            refresh=False)
    _sync(device)
    per_it = ((time.perf_counter() - t_start - paused) / (cfg.iterations - 1)) if t_start is not None else math.nan
    if on_checkpoint is not None and checkpoint_every:
        on_checkpoint(cfg.iterations, snapshot())
    return DistillResult(images.detach(), init_labels, None if label_logits is None else label_logits.detach(),
                         float(syn_lr.detach()), pal, [float(v) for v in torch.stack(losses).cpu()] if losses else [],
                         per_it, accepted)


@torch.no_grad()
def store_palette_images(images: Tensor, pal: PaletteNet, pre: Preprocess) -> dict[str, np.ndarray]:
    """The stored form of colour-reduced images: hard assignment (Eq. 5) -> uint8 index maps [N, H, W] and palettes
    [N, K, 3] in network space (float32; the mean of each bucket's pixels), the float images they decode to (what
    evaluation trains on, unclipped, as the official code), and their 8-bit rendering (for figures)."""
    index = hard_assign(pal(images))                                            # [N, H, W]
    decoded, palette = hard_quantize(images, index, pal.n_colors)               # [N, 3, H, W], [N, K, 3]
    return {"index": index.cpu().numpy().astype(np.uint8), "palette": palette.float().cpu().numpy(),
            "net_images": decoded.float().cpu().numpy(), "images": pre.to_uint8(decoded)}


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
