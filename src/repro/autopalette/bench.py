"""Speed of the two hot loops at a scale's settings, on random data of the real shapes (content does not change the
cost): seconds per expert epoch and per distillation iteration (MTT and AutoPalette) for chosen runs.

`python -m repro.autopalette bench --scale smoke [--runs autopalette_c10_ipc1 mtt_c10_ipc1] --out bench.json`
"""

from __future__ import annotations

import time

import numpy as np
import torch

from repro.common.augment import DSA
from repro.common.io import save_json
from repro.common.nets import flatten_params
from repro.common.train import TrainSpec, train_classifier
from repro.autopalette.config import AutoPaletteConfig, replace_distill
from repro.autopalette.data import Preprocess
from repro.autopalette.distill import distill
from repro.autopalette.experts import make_net
from repro.autopalette.pipeline import stored_images_per_class

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(cfg: AutoPaletteConfig, runs: list[str], device, train_images: int, iterations: int,
          overrides: dict | None = None) -> dict:
    """`overrides`: distillation settings (syn_steps, batch_syn) replacing the runs' own."""
    rng = np.random.default_rng(0)
    out: dict = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    pre = Preprocess.for_dataset("cifar10", None, False, 0.1, device)
    classes = NUM_CLASSES[cfg.data.datasets[0]]
    x = pre.to_net(rng.integers(0, 256, (train_images, 32, 32, 3), dtype=np.uint8), device)
    y = torch.from_numpy(rng.integers(0, classes, train_images)).to(device)
    net = make_net(cfg.net, classes, (32, 32), device)
    e = cfg.experts
    spec = TrainSpec(2, e.lr, e.batch_size, e.momentum, e.weight_decay)
    _sync(device)
    t0 = time.perf_counter()
    train_classifier(net, x, y, spec, augment=DSA(cfg.dsa) if e.dsa else None)
    _sync(device)
    out["expert_seconds_per_epoch"] = (time.perf_counter() - t0) / 2
    out["expert_images_per_epoch"] = train_images
    length = 1 + max(cfg.run_distill(cfg.runs[r]).max_start_epoch + cfg.run_distill(cfg.runs[r]).expert_epochs
                     for r in runs)
    flat = flatten_params(net)
    trajs = (flat + 0.01 * torch.randn(2, length, flat.numel(), device=device)).contiguous()
    out["runs"] = {}
    for name in runs:
        run = cfg.runs[name]
        n = stored_images_per_class(run) * NUM_CLASSES[run.dataset]
        dcfg = replace_distill(cfg.run_distill(run), {**(overrides or {}), "iterations": iterations})
        rc = NUM_CLASSES[run.dataset]
        init = pre.to_net(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), device)
        labels = torch.arange(n, device=device) % rc
        rnet = make_net(cfg.net, rc, (32, 32), device)
        rtrajs = trajs if rc == classes else (flatten_params(rnet) + 0.01 * torch.randn(
            2, length, rnet.num_params(), device=device)).contiguous()
        entry = {"method": run.method, "images": n, "syn_steps": dcfg.syn_steps, "batch_syn": dcfg.batch_syn or n}
        out["runs"][name] = entry
        try:
            res = distill(init, labels, rtrajs, rnet, pre, dcfg, cfg.dsa, 0,
                          palette=cfg.run_palette(run) if run.method == "autopalette" else None,
                          n_colors=run.n_colors, desc=f"bench {name}")
        except torch.OutOfMemoryError as err:     # a paper-scale run may need more than one GPU's memory
            entry["error"] = f"out of memory: {str(err).splitlines()[0]}"
            del init, rnet, rtrajs
            torch.cuda.empty_cache()
            continue
        entry["seconds_per_iteration"] = res.seconds_per_iteration
        if device.type == "cuda":
            out["runs"][name]["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
    return out


def run_bench(cfg: AutoPaletteConfig, runs: list[str], device, train_images: int, iterations: int, out_path,
              overrides: dict | None = None) -> dict:
    result = bench(cfg, runs, device, train_images, iterations, overrides)
    if out_path:
        save_json(out_path, result)
    return result
