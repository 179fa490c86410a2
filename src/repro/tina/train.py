"""Training Tina's generator on (task text, p-model) pairs, and sampling heads for new task texts.

Recipe from the Tina configs (paper sheet section 3): AdamW (beta2 0.999), linear warm-up then cosine learning rate,
gradient-norm clipping, an EMA of the weights used for sampling, class-order permutation augmentation. Sizes and
step counts come from `config/tina.yaml` (tiny at smoke scale).

Everything a step needs lives on the device; a step draws a batch, permutes class slots, noises, and updates, with no
host synchronisation except every `log_every` steps for the progress bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from repro.common.errors import UserError
from repro.common.progress import progress
from repro.tina.config import GeneratorConfig
from repro.tina.diffusion import GaussianDiffusion
from repro.tina.model import ParamDiT
from repro.tina.params import HeadLayout, ScalarNormalizer, TokenLayout, build_splits, permute_slots


@dataclass
class HeadData:
    """p-model heads with the text of each slot: weight [N, K, F], bias [N, K], text [N, K, E], mask [N, K]."""

    weight: Tensor
    bias: Tensor
    text: Tensor
    mask: Tensor

    def to(self, device) -> "HeadData":
        return HeadData(*(getattr(self, k).to(device) for k in ("weight", "bias", "text", "mask")))

    def __len__(self) -> int:
        return self.weight.shape[0]


def build_generator(cfg: GeneratorConfig, layout: HeadLayout, text_dim: int | None) -> ParamDiT:
    splits = build_splits(layout.param_sizes(), cfg.split_policy, cfg.chunk_size, layout.k_max, layout.feat_dim)
    return ParamDiT(TokenLayout(splits), layout.k_max, text_dim, cfg.n_embd, cfg.n_layer, cfg.n_head,
                    cfg.num_frequencies, cfg.max_freq_log2, share_param_proj=cfg.split_policy == "class_rows")


def _lr_lambda(cfg: GeneratorConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))
    return f


@dataclass
class TrainResult:
    ema: ParamDiT
    normalizer: ScalarNormalizer
    steps_per_s: float
    train_s: float
    final_loss: float


def train_generator(net: ParamDiT, data: HeadData, layout: HeadLayout, cfg: GeneratorConfig, device: torch.device,
                    seed: int, desc: str = "generator") -> TrainResult:
    if len(data) == 0:
        raise UserError("no p-models to train the generator on; raise tasks.n_train_tasks")
    valid = torch.cat([data.weight[data.mask].flatten(), data.bias[data.mask]])
    normalizer = ScalarNormalizer.fit(valid)
    data = data.to(device)
    net = net.to(device).train()
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
    opt = torch.optim.AdamW(net.param_groups(cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    diffusion = GaussianDiffusion(cfg.timesteps, cfg.beta_start, cfg.beta_end).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, k = data.mask.shape
    cond = net.conditional
    running = torch.zeros((), device=device)
    bar = progress(range(cfg.steps), desc=desc)
    t0 = time.perf_counter()
    for step in bar:
        idx = torch.randint(0, n, (cfg.batch_size,), device=device, generator=gen)
        w, b, text, mask = data.weight[idx], data.bias[idx], data.text[idx], data.mask[idx]
        if cfg.permute_augment:
            perm = torch.rand(cfg.batch_size, k, device=device, generator=gen).argsort(dim=1)
            w, b = permute_slots(w, b, perm)
            text = text.gather(1, perm.unsqueeze(-1).expand(-1, -1, text.shape[-1]))
            mask = mask.gather(1, perm)
        x0 = normalizer.normalize(layout.flatten(w, b))
        model = (lambda x, t: net(x, t, text, mask)) if cond else (lambda x, t: net(x, t))
        loss = diffusion.loss(model, x0, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema.update_parameters(net)
        running = running + loss.detach()
        if (step + 1) % cfg.log_every == 0:
            mean = float(running) / cfg.log_every  # the only host sync, every log_every steps
            if not math.isfinite(mean):
                raise UserError(f"generator loss is {mean} at step {step + 1}: training diverged; lower "
                                "generator.lr in config/tina.yaml")
            bar.set_postfix(loss=f"{mean:.4f}")
            running.zero_()
            last = mean
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t0
    final = locals().get("last", float(loss.detach()))
    return TrainResult(ema.module.eval(), normalizer, cfg.steps / train_s, train_s, final)


@torch.inference_mode()
def generate_heads(net: ParamDiT, normalizer: ScalarNormalizer, layout: HeadLayout, diffusion: GaussianDiffusion,
                   text: Tensor | None, mask: Tensor, device: torch.device, seed: int, desc: str = "sampling"
                   ) -> tuple[Tensor, Tensor]:
    """Sample one head per row of `mask` ([T, K]); unused slots are zeroed. Returns weight [T, K, F], bias [T, K]."""
    net = net.to(device).eval()
    mask = mask.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    if net.conditional:
        text = text.to(device)
        model = lambda x, t: net(x, t, text, mask)  # noqa: E731
    else:
        model = lambda x, t: net(x, t)  # noqa: E731
    flat = diffusion.to(device).sample(model, (mask.shape[0], layout.numel), device, generator=gen, desc=desc)
    w, b = layout.unflatten(normalizer.unnormalize(flat))
    return (w * mask.unsqueeze(-1)).cpu(), (b * mask).cpu()
