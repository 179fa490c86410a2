"""The model zoo: a generic model on the whole dataset and one fine-tuned personalised model ("p-model") per task.

Tina's pipeline (paper sheet section 2, "p-model pipeline"): stage 1 trains a generic model on the whole dataset,
stage 2 fine-tunes it on each personalised task; the generator learns from (task text, p-model) pairs. The
fine-tuned part is the generated part of `classifier.arch` (`repro.tina.archs`): the whole ConvNet, or the head on
the generic model's frozen features. Every p-model starts from the generic model with the task's classifier rows
(slot j = the generic row of the task's j-th class, unused slots zero) and all tasks are fine-tuned together in one
batched problem (`torch.func.vmap` over per-task parameters), which is what makes hundreds of p-models cheap. The
p-model recipe of the paper is UNVERIFIED (open item 6): ours is Adam on the cross-entropy of each task's own
training images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.common.progress import progress
from torch.func import functional_call, vmap

from repro.tina.archs import ParamLayout
from repro.tina.config import FinetuneConfig, GenericTrainConfig

# CIFAR per-channel statistics used to standardise inputs (the usual torchvision CIFAR recipe).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 [N, H, W, 3] -> standardised float32 [N, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def train_generic(model: nn.Module, x: Tensor, y: Tensor, cfg: GenericTrainConfig, device: torch.device) -> nn.Module:
    """Stage 1: SGD with momentum, cosine learning rate, random horizontal flips."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.momentum > 0)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch)
    bar = progress(total=cfg.epochs * steps_per_epoch, desc="generic model")
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=gen)
        flips = torch.rand(len(x), generator=gen) < 0.5
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb = x[idx]
            if xb.ndim == 4:  # images (a linear probe on features has nothing to flip)
                xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb)
            xb = xb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), y[idx].to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")  # one host sync per epoch
    bar.close()
    return model.eval()


@torch.inference_mode()
def extract_features(model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 1000) -> Tensor:
    model.eval()
    out = [model.embed(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def slot_positions(slots: Tensor, n_classes: int) -> Tensor:
    """[T, n_classes]: the slot of class c in task t, -1 where c is not in t."""
    T, K = slots.shape
    pos = torch.full((T, n_classes + 1), -1, dtype=torch.long)  # column n_classes absorbs the -1 padding
    cls = torch.where(slots >= 0, slots, torch.full_like(slots, n_classes))
    pos.scatter_(1, cls, torch.arange(K).expand(T, K).clone())
    return pos[:, :n_classes]


@dataclass(frozen=True)
class HeadScores:
    """Per task: accuracy over its test images, and per slot the correct and total counts."""

    acc: Tensor        # [T]
    correct: Tensor    # [T, K]
    count: Tensor      # [T, K]


# -- batched per-task models --------------------------------------------------------------------------------------
def initial_models(generic: nn.Module, layout: ParamLayout, slots: Tensor) -> Tensor:
    """[T, numel] p-model initialisations: the generic model's generated part with, in slot j of task t, the generic
    classifier row of the task's j-th class (zero rows in unused slots)."""
    state = {k: v.detach().cpu() for k, v in generic.state_dict().items()}
    T = slots.shape[0]
    params = {}
    for name, shape in zip(layout.names, layout.shapes):
        if name in ("fc.weight", "fc.bias"):
            continue
        params[name] = state[name].expand(T, *shape).clone()
    w, b = generic_classifier(generic)
    mask = (slots >= 0).float()
    params["fc.weight"] = w[slots.clamp(min=0)] * mask.unsqueeze(-1)
    params["fc.bias"] = b[slots.clamp(min=0)] * mask
    return layout.flatten(params)


def generic_classifier(model: nn.Module) -> tuple[Tensor, Tensor]:
    fc = model.fc if hasattr(model, "fc") else model.classifier
    return fc.weight.detach().cpu(), fc.bias.detach().cpu()


def _forward(module: nn.Module):
    """(params {name: [T, ...]}, x [T, M, ...]) -> logits [T, M, K]: every task's model on its own inputs."""
    return vmap(lambda p, xb: functional_call(module, p, (xb,)))


def class_pools(labels: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """Per task, the indices of the examples of its classes (padded with -1) and how many there are."""
    by_class = [torch.nonzero(labels == c).squeeze(1) for c in range(int(labels.max()) + 1)]
    pools = [torch.cat([by_class[c] for c in task if c >= 0]) for task in slots.tolist()]
    length = torch.tensor([len(p) for p in pools])
    out = torch.full((len(pools), int(length.max())), -1, dtype=torch.long)
    for i, p in enumerate(pools):
        out[i, :len(p)] = p
    return out, length


def _masked(logits: Tensor, enabled: Tensor) -> Tensor:
    return logits.masked_fill(~enabled.unsqueeze(1), float("-inf"))


def finetune_models(module: nn.Module, layout: ParamLayout, flat0: Tensor, x: Tensor, labels: Tensor, slots: Tensor,
                    n_classes: int, cfg: FinetuneConfig, device: torch.device, trainable: tuple[str, ...] | None = None,
                    desc: str = "p-models", task_chunk: int = 256) -> Tensor:
    """Stage 2 for every task at once: Adam on each task's cross-entropy over `batch_size` of its own training
    examples per step (labels = the class's slot). `trainable` limits the fine-tuned parameters (None: all, as for
    Tina's whole-network p-models; ("fc.weight", "fc.bias"): the head only). Unused slots stay zero."""
    gen = torch.Generator().manual_seed(cfg.seed)
    T = slots.shape[0]
    enabled = (slots >= 0).to(device)
    pos = slot_positions(slots, n_classes).to(device)
    pools, length = class_pools(labels, slots)
    params = {k: v.to(device) for k, v in layout.unflatten(flat0).items()}
    train = [n for n in layout.names if trainable is None or n in trainable]
    for n in train:
        params[n] = params[n].clone().requires_grad_(True)
    opt = torch.optim.Adam([params[n] for n in train], lr=cfg.lr, weight_decay=cfg.weight_decay)
    fwd = _forward(module.to(device))
    x, labels = x.to(device), labels.to(device)
    rows = torch.arange(T).unsqueeze(1)
    fc_mask = {"fc.weight": enabled.unsqueeze(-1).float(), "fc.bias": enabled.float()}
    bar = progress(range(cfg.steps), desc=desc)
    for step in bar:
        r = (torch.rand(T, cfg.batch_size, generator=gen) * length.unsqueeze(1)).long()
        idx = pools[rows, r].to(device)                                          # [T, b]
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        # Tasks are independent: chunks of tasks bound the activation memory (paper scale: 1,200 networks).
        for lo in range(0, T, task_chunk):
            sl = slice(lo, lo + task_chunk)
            logits = _masked(fwd({n: p[sl] for n, p in params.items()}, x[idx[sl]]), enabled[sl])   # [t, b, K]
            target = pos[sl].gather(1, labels[idx[sl]])                                            # [t, b]
            part = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum") / cfg.batch_size
            part.backward()
            loss = loss + part.detach()
        with torch.no_grad():  # keep unused slots exactly zero
            for n in ("fc.weight", "fc.bias"):
                if n in train:
                    params[n].grad.mul_(fc_mask[n])
        opt.step()
        if (step + 1) % max(1, cfg.steps // 5) == 0:
            bar.set_postfix(loss=f"{loss.item() / T:.3f}")
    return layout.flatten({n: p.detach() for n, p in params.items()}).cpu()


@torch.inference_mode()
def evaluate_models(module: nn.Module, layout: ParamLayout, flat: Tensor, x: Tensor, labels: Tensor, slots: Tensor,
                    n_classes: int, device: torch.device, image_chunk: int = 1024, desc: str | None = None
                    ) -> HeadScores:
    """Top-1 accuracy of each task's model (one flat parameter vector per task, the only parameters the network
    runs with) on the test examples of the task's classes, labels remapped to slots (Tina's protocol, sheet
    section 4). Tasks run one after another: on CPUs a plain convolution per task is 3-5x faster than the grouped
    convolution `vmap` turns a batch of networks into (measured with ConvNet5k, 280 images per task)."""
    if set(layout.names) != set(module.state_dict()):
        raise ValueError("the flat layout must cover every parameter and buffer of the evaluated module")
    T, K = slots.shape
    enabled = (slots >= 0).to(device)
    pos = slot_positions(slots, n_classes)
    module = module.to(device).eval()
    correct = torch.zeros(T, K)
    count = torch.zeros(T, K)
    tasks = range(T)
    for t in (progress(tasks, desc=desc) if desc else tasks):
        params = {k: v[0].to(device) for k, v in layout.unflatten(flat[t:t + 1]).items()}
        idx = torch.nonzero(pos[t, labels] >= 0).squeeze(1)
        for lo in range(0, len(idx), image_chunk):
            sel = idx[lo:lo + image_chunk]
            logits = functional_call(module, params, (x[sel].to(device),))
            pred = logits.masked_fill(~enabled[t], float("-inf")).argmax(-1).cpu()
            target = pos[t, labels[sel]]
            correct[t].scatter_add_(0, target, (pred == target).float())
            count[t].scatter_add_(0, target, torch.ones(len(sel)))
    return HeadScores(correct.sum(1) / count.sum(1).clamp(min=1), correct, count)
