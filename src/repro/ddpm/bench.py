"""Throughput of the DDPM trainer and sampler at a scale's network size, on whatever device is present.

`python -m repro.ddpm bench --scale paper` times `--train-steps` training steps (after `--warmup-steps`) of the real
`Trainer` on random uint8 images (the cost does not depend on the pixels), and `--sample-steps` reverse steps of
the real sampler at `--sample-batch`; sampling images/s for a full T-step chain is batch / (T x time per step),
since every step costs the same. Reads config/<paper>.yaml without the schema check so that it runs where only
torch, numpy and pyyaml are installed (e.g. a GPU node before the full environment is set up).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import torch

from repro.common.config import project_root, read_yaml
from repro.ddpm.config import VARIANTS, DDPMConfig, DiffusionConfig
from repro.ddpm.diffusion import Diffusion
from repro.ddpm.train import Trainer, build_model
from repro.ddpm.unet import cpu_layout


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bench(scale: str, variant: str, *, train_steps: int, warmup_steps: int, batch: int | None, amp: bool,
              compile: bool, clip_microbatch: int | None = None,
              sample_batch: int, sample_steps: int, device: torch.device, ckpt_dir: str) -> dict:
    block = read_yaml(project_root() / "config" / "ddpm.yaml")[scale]
    cfg = DDPMConfig.from_block(scale, block)
    micro = cfg.train.clip_microbatch if clip_microbatch is None else clip_microbatch
    cfg = replace(cfg, train=replace(cfg.train, batch_size=batch or cfg.train.batch_size, amp=amp, compile=compile,
                                     steps=warmup_steps + train_steps, ckpt_every=0, log_every=10 ** 9,
                                     clip_microbatch=micro))
    images = np.random.default_rng(0).integers(0, 256, (cfg.train.batch_size * 4, cfg.model.resolution,
                                                        cfg.model.resolution, 3), dtype=np.uint8)
    tr = Trainer(cfg, variant, images, seed=0, device=device, ckpt_dir=ckpt_dir)
    for s in range(warmup_steps):
        tr.train_step(s)
    _sync(device)
    t0 = time.perf_counter()
    for s in range(warmup_steps, warmup_steps + train_steps):
        tr.train_step(s)
    _sync(device)
    train_step_s = (time.perf_counter() - t0) / train_steps
    train_ips = cfg.train.batch_size / train_step_s

    model = cpu_layout(build_model(cfg, VARIANTS[variant]).to(device), device).eval()   # as generate()
    if compile and device.type == "cuda":
        model = torch.compile(model)

    def chain(steps: int) -> Diffusion:
        return Diffusion(DiffusionConfig(steps=steps, beta_start=cfg.diffusion.beta_start,
                                         beta_end=cfg.diffusion.beta_end), VARIANTS[variant]).to(device)

    shape = (sample_batch, cfg.model.in_channels, cfg.model.resolution, cfg.model.resolution)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        chain(2).sample(model, shape, torch.Generator(device=device).manual_seed(0))   # warm-up (and compile)
        _sync(device)
        t0 = time.perf_counter()
        chain(sample_steps).sample(model, shape, torch.Generator(device=device).manual_seed(1))
        _sync(device)
    per_step = (time.perf_counter() - t0) / sample_steps
    sample_ips = sample_batch / (per_step * cfg.diffusion.steps)
    return {"scale": scale, "variant": variant, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)", "amp_bf16": amp, "compile": compile,
            "train_batch": cfg.train.batch_size, "clip_microbatch": cfg.train.clip_microbatch,
            "train_steps_timed": train_steps,
            "train_seconds_per_step": float(f"{train_step_s:.4g}"), "train_images_per_s": float(f"{train_ips:.4g}"),
            "train_steps_per_s": float(f"{1 / train_step_s:.4g}"),
            "sample_batch": sample_batch, "sample_steps_timed": sample_steps, "T": cfg.diffusion.steps,
            "sample_seconds_per_step": float(f"{per_step:.4g}"),
            "sample_images_per_s_full_chain": float(f"{sample_ips:.4g}"),
            "sample_network_evals_per_s": float(f"{sample_batch / per_step:.4g}"),
            "params": sum(p.numel() for p in model.parameters())}


def main(args) -> None:
    from repro.common.device import pick_device, set_threads

    set_threads(args.threads)
    res = run_bench(args.scale, args.variant, train_steps=args.train_steps, warmup_steps=args.warmup_steps,
                    batch=args.batch, amp=args.amp, compile=args.compile, clip_microbatch=args.clip_microbatch,
                    sample_batch=args.sample_batch, sample_steps=args.sample_steps,
                    device=pick_device(), ckpt_dir=args.ckpt_dir)
    print(json.dumps(res))
