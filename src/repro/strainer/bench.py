"""`python -m repro.strainer bench`: the cost of test-time fitting per image-iteration, one image at a time against
N images fitted as one batched problem (`fit_stack`: one `torch.baddbmm` per layer over the stacked weights of N
networks, i.e. a block-diagonal network), for N in --n (default 1, 6, 50), on the CPU and on CUDA when present.

Each measurement is the real inner loop (forward, PSNR bookkeeping, backward, Adam) of the paper's SIREN (6 layers,
omega0 30) at --width and --resolution, from a random initialisation, after --warmup untimed iterations.
Sequential time for N is N times the time of one single-image fit (the fits are independent and identical in
cost). Prints one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import torch

from repro.strainer.data import coord_grid
from repro.strainer.fit import fit_stack
from repro.strainer.siren import SirenSpec, init_networks


def _time_fit(spec: SirenSpec, n: int, resolution: int, iters: int, warmup: int, device: torch.device,
              seed: int = 0) -> float:
    """Seconds per iteration of one fit of `n` stacked networks (median of the timed iterations' mean)."""
    coords = coord_grid(resolution, device)
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, resolution * resolution, spec.out_features, generator=g) * 2 - 1).to(device)
    layers = init_networks(spec, list(range(n)), device=device)
    fit_stack(layers, coords, targets, targets, omega0=spec.omega0, iters=warmup, lr=1e-4, desc=f"warm-up N={n}")
    res = fit_stack(layers, coords, targets, targets, omega0=spec.omega0, iters=iters, lr=1e-4,
                    desc=f"N={n} batched")
    return res.seconds / iters


def bench(ns: Sequence[int] = (1, 6, 50), *, resolution: int = 64, width: int = 256, iters: int = 5,
          warmup: int = 2, devices: Sequence[str] | None = None, tf32: bool = False) -> dict:
    """Per-image-iteration milliseconds, sequential and batched, for every N and device."""
    spec = SirenSpec(in_features=2, width=width, out_features=3, n_layers=6, omega0=30.0)
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = {"model": {"width": width, "n_layers": spec.n_layers, "params": spec.n_params},
           "resolution": resolution, "iters": iters, "warmup": warmup, "torch": torch.__version__,
           "cpu_threads": torch.get_num_threads(), "results": []}
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            out["cuda"] = {"name": torch.cuda.get_device_name(device), "tf32": tf32}
        one = _time_fit(spec, 1, resolution, iters, warmup, device)
        for n in ns:
            batched = one if n == 1 else _time_fit(spec, n, resolution, iters, warmup, device)
            seq_ms, bat_ms = 1e3 * one, 1e3 * batched / n
            out["results"].append({"device": name, "n": n, "sequential_ms_per_image_iter": round(seq_ms, 4),
                                   "batched_ms_per_image_iter": round(bat_ms, 4),
                                   "batched_speedup": round(seq_ms / bat_ms, 3)})
            print(f"bench {name} N={n}: sequential {seq_ms:.3f} ms, batched {bat_ms:.3f} ms per image-iteration "
                  f"({seq_ms / bat_ms:.2f}x)", file=sys.stderr)
    return out


def main(args) -> None:
    result = bench(args.n, resolution=args.resolution, width=args.width, iters=args.iters, warmup=args.warmup,
                   devices=args.devices, tf32=args.tf32)
    result["wall_s"] = round(time.perf_counter() - args.t0, 2)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
