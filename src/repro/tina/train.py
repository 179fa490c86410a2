"""Training Tina's generator on (task text, p-model) pairs, and sampling heads for new task texts.

Recipe from the Tina configs (paper sheet section 3): AdamW (beta2 0.999), linear warm-up then cosine learning rate,
gradient-norm clipping, an EMA of the weights used for sampling, class-order permutation augmentation. Sizes and
step counts come from `config/tina.yaml` (tiny at smoke scale).

Everything a step needs lives on the device; a step draws a batch, permutes class slots, noises, and updates, with no
host synchronisation except every `log_every` steps for the progress bar.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from repro.common.errors import UserError
from repro.common.io import save_torch
from repro.common.progress import progress
from repro.tina.config import GeneratorConfig
from repro.tina.diffusion import GaussianDiffusion
from repro.tina.model import ParamDiT
from repro.tina.archs import ParamLayout
from repro.tina.params import ScalarNormalizer, TokenLayout, build_splits


log = logging.getLogger(__name__)


@dataclass
class ParamData:
    """Flat p-models [N, numel] with the text of each class slot [N, K, E] and the used slots [N, K]."""

    flat: Tensor
    text: Tensor
    mask: Tensor

    def to(self, device) -> "ParamData":
        return ParamData(*(getattr(self, k).to(device) for k in ("flat", "text", "mask")))

    def __len__(self) -> int:
        return self.flat.shape[0]


def build_generator(cfg: GeneratorConfig, layout: ParamLayout, text_dim: int | None) -> ParamDiT:
    if cfg.split_policy == "class_rows" and not layout.head_only:
        raise UserError("generator.split_policy class_rows needs a head arch (resnet20_after, clip_vit_b32_after); "
                        "use chunk_within_layer for whole networks")
    splits = build_splits(layout.sizes, cfg.split_policy, cfg.chunk_size, layout.k_max, layout.feat_dim)
    return ParamDiT(TokenLayout(splits), layout.k_max, text_dim, cfg.n_embd, cfg.n_layer, cfg.n_head,
                    cfg.num_frequencies, cfg.max_freq_log2, share_param_proj=cfg.split_policy == "class_rows",
                    conditioning=cfg.conditioning, slot_tokens=cfg.split_policy != "chunk_within_layer")


def make_diffusion(cfg: GeneratorConfig) -> GaussianDiffusion:
    return GaussianDiffusion(cfg.timesteps, cfg.beta_start, cfg.beta_end, variance=cfg.sampler_variance,
                             sample_steps=cfg.sample_steps)


def fit_normalizer(cfg: GeneratorConfig, flat: Tensor) -> ScalarNormalizer:
    return ScalarNormalizer.openai() if cfg.normalizer == "openai" else ScalarNormalizer.fit(flat)


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


def _state(step, net, ema, opt, sched, gen, key) -> dict:
    return {"step": step, "net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
            "sched": sched.state_dict(), "rng": gen.get_state(), "key": key}


def train_generator(net: ParamDiT, data: ParamData, layout: ParamLayout, cfg: GeneratorConfig, device: torch.device,
                    seed: int, desc: str = "generator", ckpt: str | Path | None = None,
                    ckpt_every: int = 0) -> TrainResult:
    """Train `net` on `data`; with `ckpt`, save a resumable state every `ckpt_every` steps and resume from it.

    A checkpoint is only resumed when it was written for the same config, seed and data size (its `key`); it is
    removed once training has finished.
    """
    if len(data) == 0:
        raise UserError("no p-models to train the generator on; raise tasks.n_train_tasks")
    normalizer = fit_normalizer(cfg, data.flat)
    data = data.to(device)
    net = net.to(device).train()
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
    opt = torch.optim.AdamW(net.param_groups(cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    diffusion = make_diffusion(cfg).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, k = data.mask.shape
    cond = net.conditional
    running = torch.zeros((), device=device)
    key = {"config": asdict(cfg), "seed": seed, "n": n, "conditional": cond}
    start = 0
    if ckpt is not None and Path(ckpt).is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["key"] == key:
            net.load_state_dict(state["net"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["rng"].cpu() if device.type == "cpu" else state["rng"])
            start = int(state["step"])
            log.info("resuming generator training at step %d from %s", start, ckpt)
        else:
            log.warning("ignoring %s: written for another config, seed or zoo", ckpt)
    bar = progress(range(start, cfg.steps), desc=desc, total=cfg.steps - start)
    t0 = time.perf_counter()
    for step in bar:
        idx = torch.randint(0, n, (cfg.batch_size,), device=device, generator=gen)
        flat, text, mask = data.flat[idx], data.text[idx], data.mask[idx]
        if cfg.permute_augment:
            perm = torch.rand(cfg.batch_size, k, device=device, generator=gen).argsort(dim=1)
            flat, text, mask = permute_classes(layout, flat, text, mask, perm)
        x0 = normalizer.normalize(flat)
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
        if ckpt is not None and ckpt_every and (step + 1) % ckpt_every == 0 and step + 1 < cfg.steps:
            save_torch(ckpt, _state(step + 1, net, ema, opt, sched, gen, key))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t0
    final = locals().get("last", float(loss.detach()))
    if ckpt is not None:
        Path(ckpt).unlink(missing_ok=True)
    return TrainResult(ema.module.eval(), normalizer, (cfg.steps - start) / train_s, train_s, final)


def permute_classes(layout: ParamLayout, flat: Tensor, text: Tensor, mask: Tensor, perm: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Tina's class-order augmentation: the same permutation [B, K] of the class list (text tokens, slot mask) and
    of the classifier's rows; a permuted p-model computes the same function of the permuted labels."""
    text = text.gather(1, perm.unsqueeze(-1).expand(-1, -1, text.shape[-1]))
    return layout.select_classes(flat, perm), text, mask.gather(1, perm)


@torch.inference_mode()
def generate(net: ParamDiT, normalizer: ScalarNormalizer, layout: ParamLayout, diffusion: GaussianDiffusion,
             text: Tensor | None, mask: Tensor, device: torch.device, seed: int, desc: str = "sampling") -> Tensor:
    """Sample one parameter vector per row of `mask` ([T, K]); the classifier rows of unused slots are zeroed.
    Returns flat [T, numel]."""
    net = net.to(device).eval()
    mask = mask.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    if net.conditional:
        text = text.to(device)
        model = lambda x, t: net(x, t, text, mask)  # noqa: E731
    else:
        model = lambda x, t: net(x, t)  # noqa: E731
    flat = diffusion.to(device).sample(model, (mask.shape[0], layout.numel), device, generator=gen, desc=desc)
    return layout.zero_unused(normalizer.unnormalize(flat), mask).cpu()
