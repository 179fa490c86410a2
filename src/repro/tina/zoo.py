"""The model zoo: a generic model on the seen classes and one fine-tuned personalised head ("p-model") per task.

Tina's pipeline (paper sheet section 2, "p-model pipeline"): stage 1 trains a generic model, stage 2 fine-tunes it
on each personalised task; the generator learns from (task text, p-model) pairs. The generated part here is the
classifier head on the generic model's frozen features (Tina's ResNet-20 and CLIP variants; sheet section 2), so
stage 2 is a multinomial logistic regression per task on fixed features. Features are computed once and all tasks
are fine-tuned together in one batched problem (one einsum per step for every task), which is what makes hundreds
of p-models cheap. The p-model recipe of the paper is UNVERIFIED (open item 6): ours is Adam on the cross-entropy
of each task's training images, initialised from the generic head's rows (zero rows for held-out classes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.common.errors import UserError
from repro.common.progress import progress
from repro.tina.config import ClassifierConfig, FinetuneConfig, GenericTrainConfig

# CIFAR per-channel statistics used to standardise inputs (the usual torchvision CIFAR recipe).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 [N, H, W, 3] -> standardised float32 [N, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def build_classifier(cfg: ClassifierConfig, num_classes: int, im_size: int = 32) -> nn.Module:
    """A classifier with `embed(x)` (features) and `classifier` (the linear head Tina generates)."""
    if cfg.arch == "convnet":
        from repro.common.nets import ConvNet

        return ConvNet(3, num_classes, width=cfg.width, depth=cfg.depth, im_size=(im_size, im_size))
    if cfg.arch == "tina_cnn":
        from repro.tina.nets import TinaCNN

        return TinaCNN(num_classes, widths=(cfg.width, 2 * cfg.width))
    if cfg.arch == "resnet20":
        from repro.common.resnet import resnet20

        return resnet20(num_classes)
    raise UserError(f"classifier.arch '{cfg.arch}' unknown; use tina_cnn, convnet or resnet20")


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
            xb = torch.where(flips[idx].view(-1, 1, 1, 1), xb.flip(3), xb).to(device, non_blocking=True)
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


def _masked_logits(feats: Tensor, weight: Tensor, bias: Tensor, enabled: Tensor) -> Tensor:
    """[N, K, T] logits of every image under every task's head (slot-major, so that softmax and argmax over the
    few slots run along a strided axis with the many tasks contiguous); disabled slots get -inf."""
    T, K, F_ = weight.shape
    logits = (feats @ weight.transpose(0, 1).reshape(K * T, F_).T).view(-1, K, T) + bias.T.unsqueeze(0)
    return logits.masked_fill(~enabled.T.unsqueeze(0), float("-inf"))


def finetune_heads(feats: Tensor, labels: Tensor, slots: Tensor, weight0: Tensor, bias0: Tensor, n_classes: int,
                   cfg: FinetuneConfig, device: torch.device, desc: str = "p-models") -> tuple[Tensor, Tensor]:
    """Stage 2 for every task at once: per-task cross-entropy on its own classes' images, summed over tasks.

    Each step draws `batch_size` images from the pooled training set; an image counts for every task that contains
    its class (each task thus sees, on average, batch_size * n / N of its own images per step). Unused slots stay 0.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    enabled = (slots >= 0).to(device)
    pos = slot_positions(slots, n_classes).to(device)
    weight = weight0.clone().to(device).requires_grad_(True)
    bias = bias0.clone().to(device).requires_grad_(True)
    opt = torch.optim.Adam([weight, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
    feats, labels = feats.to(device), labels.to(device)
    for step in progress(range(cfg.steps), desc=desc):
        idx = torch.randint(len(feats), (cfg.batch_size,), generator=gen).to(device)
        logits = _masked_logits(feats[idx], weight, bias, enabled)            # [B, K, T]
        target = pos[:, labels[idx]].T                                        # [B, T], -1: class not in task
        valid = target >= 0
        logp = logits.log_softmax(1).gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
        per_task = -(logp * valid).sum(0) / valid.sum(0).clamp(min=1)         # [T]
        loss = per_task.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep unused slots exactly zero (they are masked anyway)
            weight.grad.mul_(enabled.unsqueeze(-1))
            bias.grad.mul_(enabled)
        opt.step()
    return weight.detach().cpu(), bias.detach().cpu()


@dataclass(frozen=True)
class HeadScores:
    """Per task: accuracy over its test images, and per slot the correct and total counts."""

    acc: Tensor        # [T]
    correct: Tensor    # [T, K]
    count: Tensor      # [T, K]


@torch.inference_mode()
def evaluate_heads(feats: Tensor, labels: Tensor, slots: Tensor, weight: Tensor, bias: Tensor, n_classes: int,
                   enabled: Tensor | None = None, chunk: int = 128) -> HeadScores:
    """Top-1 accuracy of each task's head on the test images of the task's classes (labels = slot indices).

    Tina evaluates a generated model on the test images of the prompted classes only, with labels remapped to
    0..n-1 ([Tina-repo `Gpt/vis.py`]; sheet section 4). `enabled` disables slots (-inf logit) that a baseline cannot
    predict (the generic model has no row for a held-out class); their images then always count as errors.
    """
    T, K = slots.shape
    if enabled is None:
        enabled = slots >= 0
    pos = slot_positions(slots, n_classes)
    correct = torch.zeros(T, K)
    count = torch.zeros(T, K)
    for lo in range(0, T, chunk):
        sl = slice(lo, lo + chunk)
        pred = _masked_logits(feats, weight[sl].float(), bias[sl].float(), enabled[sl]).argmax(1)   # [N, t]
        target = pos[sl][:, labels].T                                                               # [N, t]
        valid = target >= 0
        # A head whose slots are all disabled predicts nothing (argmax of all -inf would pick slot 0).
        can_predict = enabled[sl].gather(1, pred.T).T
        hit = (pred == target) & valid & can_predict
        tgt = target.clamp(min=0).T
        correct[sl].scatter_add_(1, tgt, hit.T.float())
        count[sl].scatter_add_(1, tgt, valid.T.float())
    acc = correct.sum(1) / count.sum(1).clamp(min=1)
    return HeadScores(acc, correct, count)


def generic_heads(generic_head: nn.Linear, generic_classes: tuple[int, ...], slots: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """The generic model restricted to each task's classes: its rows for the task's seen classes.

    Returns weight [T, K, F], bias [T, K] and `enabled` [T, K] (False for unused slots and held-out classes).
    """
    row_of = {c: i for i, c in enumerate(generic_classes)}
    T, K = slots.shape
    rows = torch.tensor([[row_of.get(int(c), -1) for c in task] for task in slots.tolist()], dtype=torch.long)
    enabled = rows >= 0
    w = generic_head.weight.detach().cpu()[rows.clamp(min=0)] * enabled.unsqueeze(-1)
    b = generic_head.bias.detach().cpu()[rows.clamp(min=0)] * enabled
    return w, b, enabled
