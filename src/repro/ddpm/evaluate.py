"""Evaluation of trained (or released) DDPMs: samples, FID/KID/IS, the full bound in bits/dim, progressive coding.

- Samples: Algorithm 2, batched and seeded (one generator per batch, seeded by (seed, batch index)), with the x0
  clipping of the official sampler.
- FID/KID/IS: the shared torch-fidelity pipeline (`repro.common.metrics.fidelity`) against reference statistics
  of CIFAR-10 train (the paper's Table 1) and test (§4.1's 5.24).
- NLL: per image, L_T + sum over all T steps of one draw of L_{t-1}, in bits/dim (official `calc_bpd_loop`).
- Progressive lossy coding (§4.3, Table 4, Fig. 5): with x_T, x_{T-1}, ..., x_t received, the rate is
  L_T + L_{T-1} + ... + L_t and the distortion is the RMSE (0-255 scale) of the predicted x̂0 from x_t, per image
  then averaged (the paper's sqrt(||x0 - x̂0||² / D); the pooled sqrt of the mean MSE is reported beside it); reverse
  step k = T - t + 1. The terms come from the same pass as the NLL (one independent x_t ~ q(x_t | x0) per t, as the
  official code; each x_t has the marginal of the coded chain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.common.progress import progress
from repro.ddpm.diffusion import Diffusion, from_uint8
from repro.ddpm.train import stream_seed
from repro.ddpm.unet import cpu_layout

SAMPLE_STREAM, BPD_STREAM = 2, 3


@dataclass(frozen=True)
class Samples:
    images: np.ndarray               # uint8 [N, H, W, C]
    x0_frames: np.ndarray | None     # uint8 [keep, frames, H, W, C]: predicted x0 along the chain
    frame_steps: np.ndarray          # reverse steps k = T - t + 1 of the frames
    images_per_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frame_indices(num_steps: int, frames: int) -> tuple[int, ...]:
    """0-indexed steps i at which to keep x̂0: evenly spaced from the first reverse step to the last."""
    return tuple(sorted({int(round(x)) for x in np.linspace(num_steps - 1, 0, frames)}, reverse=True))


def generate(model: nn.Module, diffusion: Diffusion, *, n: int, batch_size: int, seed: int, device: torch.device,
             clip: bool = True, keep: int = 0, frames: int = 0, image_shape: tuple[int, int, int] = (3, 32, 32),
             amp: bool = False) -> Samples:
    """n samples in batches; the first `keep` chains also record x̂0 at `frames` evenly spaced steps."""
    cpu_layout(model, device).eval()
    out, x0_frames, steps = [], None, frame_indices(diffusion.num_steps, frames) if keep and frames else ()
    n_batches = -(-n // batch_size)
    t_start = time.perf_counter()
    for b in progress(range(n_batches), desc="sample", total=n_batches, unit="batch"):
        size = min(batch_size, n - b * batch_size)
        gen = torch.Generator(device=device).manual_seed(stream_seed(seed, SAMPLE_STREAM, b))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            res = diffusion.sample(model, (size, *image_shape), gen, clip=clip,
                                   keep_x0_at=steps if b == 0 else (), keep=min(keep, size))
        out.append(res.images)
        if b == 0:
            if res.x0_frames is not None:
                x0_frames = ((res.x0_frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            _sync(device)
            t_first, n_first = time.perf_counter(), size
    _sync(device)
    t_end = time.perf_counter()
    # throughput from the second batch on (the first pays one-off costs); with one batch, that batch
    ips = (n - n_first) / (t_end - t_first) if n_batches > 1 else n_first / (t_first - t_start)
    images = torch.cat(out).permute(0, 2, 3, 1).cpu().numpy()
    frames_np = x0_frames.permute(0, 1, 3, 4, 2).cpu().numpy() if x0_frames is not None else None
    return Samples(images=images, x0_frames=frames_np,
                   frame_steps=np.array([diffusion.num_steps - i for i in steps], dtype=np.int64),
                   images_per_s=ips)


@dataclass(frozen=True)
class BoundResult:
    terms: np.ndarray      # float64 [N, T]: L_{t-1} per image, index i = t - 1, bits/dim
    prior: np.ndarray      # float64 [N]: L_T, bits/dim
    mse: np.ndarray        # float64 [N, T]: MSE of the clipped x̂0 from x_t on the [-1, 1] scale

    @property
    def nll(self) -> np.ndarray:
        """Per-image upper bound on the NLL, bits/dim."""
        return self.prior + self.terms.sum(axis=1)


def bound(model: nn.Module, diffusion: Diffusion, images: np.ndarray, *, batch_size: int, seed: int,
          device: torch.device, desc: str = "bpd") -> BoundResult:
    """The full variational bound over all T steps for uint8 images [N, H, W, C]."""
    cpu_layout(model, device).eval()
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    terms, prior, mse = [], [], []
    n_batches = -(-len(x_all) // batch_size)
    for b in progress(range(n_batches), desc=desc, total=n_batches, unit="batch"):
        x0 = from_uint8(x_all[b * batch_size:(b + 1) * batch_size].to(device))
        gen = torch.Generator(device=device).manual_seed(stream_seed(seed, BPD_STREAM, b))
        out = diffusion.bpd_terms(model, x0, gen)
        terms.append(out["terms"].double().cpu())
        prior.append(out["prior"].double().cpu())
        mse.append(out["mse"].double().cpu())
    return BoundResult(terms=torch.cat(terms).numpy(), prior=torch.cat(prior).numpy(), mse=torch.cat(mse).numpy())


@dataclass(frozen=True)
class RateDistortion:
    """Progressive coding along reverse steps k = 1..T (Fig. 5): dataset means.

    Two aggregations of the distortion over images: `rmse` is the paper's §4.3 definition, the RMSE of each image,
    sqrt(||x0 - x̂0||² / D), averaged over images; `rmse_pooled` is the square root of the dataset-mean squared
    error (one RMSE of all pixels together). By Jensen `rmse` <= `rmse_pooled`; on CIFAR-10-like data they differ
    by a few per cent. PSNR is 20 log10(255 / rmse) of the paper's `rmse`.
    """

    steps: np.ndarray         # k = T - t + 1, 1..T
    rate: np.ndarray          # bits/dim received up to x_t: L_T + sum_{s=t}^{T-1} L_s
    rmse: np.ndarray          # mean over images of the per-image RMSE of x̂0(x_t), 0-255 scale (paper's definition)
    rmse_pooled: np.ndarray   # sqrt of the dataset-mean squared error of x̂0(x_t), 0-255 scale
    psnr: np.ndarray          # dB, 20 log10(255 / rmse)
    distortion_bpd: float     # L_0: the decoder's bits/dim (the "distortion" of §4.3's split)


def rate_distortion(res: BoundResult) -> RateDistortion:
    terms = res.terms.mean(axis=0)                            # [T], index i = t - 1
    rmse_per_step = (np.sqrt(res.mse) * 127.5).mean(axis=0)   # per-image RMSE, then the mean over images
    pooled_per_step = np.sqrt(res.mse.mean(axis=0)) * 127.5
    T = len(terms)
    k = np.arange(1, T + 1)
    t = T - k + 1                                             # paper's 1-indexed t
    # rate(t) = L_T + sum_{i=t}^{T-1} terms[i]: a reversed cumulative sum of terms[1:], plus the prior
    suffix = np.concatenate([np.cumsum(terms[1:][::-1])[::-1], [0.0]])   # suffix[j] = sum_{i>=j+1} terms[i]
    rate = res.prior.mean() + suffix[t - 1]
    rmse = rmse_per_step[t - 1]
    with np.errstate(divide="ignore"):
        psnr = 20.0 * np.log10(255.0 / rmse)
    return RateDistortion(steps=k, rate=rate, rmse=rmse, rmse_pooled=pooled_per_step[t - 1], psnr=psnr,
                          distortion_bpd=float(terms[0]))


def coding_row_step(row: int, num_steps: int) -> int:
    """Table 4's rows are reverse steps out of 1000; at T != 1000 the same fraction of the chain."""
    return max(1, min(num_steps, int(round(row * num_steps / 1000))))

