"""Gaussian diffusion of DDPM: forward process, the Table 2 parameterisations, losses, sampler and the full bound.

Formulas: DDPM §2-3 (Eqs. 4, 7, 11-14, Algorithms 1-2; ddpm sheet §2). The behaviour follows the official
`GaussianDiffusion2` (hojonathanho/diffusion@c461299 `diffusion_tf/diffusion_utils_2.py`; sheet §3, §4, §7):

- steps are 0-indexed, i = t - 1 in the paper's notation; the network sees i;
- "fixedlarge" uses σ² = (β̃_2, β_2, ..., β_T): the first step takes the posterior variance so the decoder has a
  finite log-likelihood; "fixedsmall" uses β̃_t with β̃_1 replaced by β̃_2 in the log ("clipped" log variance);
  "learned" reads log σ² from the second half of the network's output channels;
- the sampler clips the predicted x0 to [-1, 1] *before* forming the posterior mean (official `clip_denoised=True`;
  sheet pitfall 1); for μ̃ prediction the network's mean is used as is;
- the true bound L is trained as the per-step term in bits/dim at a uniformly drawn step (`loss_type='kl'`,
  without clipping), L_simple as the unweighted MSE on the network's prediction (`loss_type='mse'`);
- the evaluation bound sums, over every step, one Monte Carlo draw of L_{t-1} (L_0 the discretised decoder) plus
  the prior term L_T, with clipping (official `calc_bpd_loop`).

Schedules are computed once in float64 and kept on the device as float32 buffers; nothing in the hot loops syncs
with the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repro.common.metrics.likelihood import (discretized_gaussian_log_likelihood, mean_flat, nats_to_bits_per_dim,
                                             normal_kl, prior_kl)
from repro.ddpm.config import DiffusionConfig, Variant


def linear_betas(cfg: DiffusionConfig) -> np.ndarray:
    """β_1..β_T linearly from beta_start to beta_end (official `get_beta_schedule('linear')`), float64."""
    return np.linspace(cfg.beta_start, cfg.beta_end, cfg.steps, dtype=np.float64)


class Diffusion(nn.Module):
    """The schedule-dependent arithmetic of one variant; buffers move with `.to(device)`."""

    def __init__(self, cfg: DiffusionConfig, variant: Variant):
        super().__init__()
        self.cfg, self.variant = cfg, variant
        self.num_steps = cfg.steps
        betas = linear_betas(cfg)
        if not (betas > 0).all() or not (betas <= 1).all():
            raise ValueError(f"betas must lie in (0, 1]; got [{betas.min()}, {betas.max()}]")
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        arrays = {
            "betas": betas,
            "sqrt_abar": np.sqrt(abar),
            "sqrt_one_minus_abar": np.sqrt(1.0 - abar),
            "sqrt_recip_abar": np.sqrt(1.0 / abar),
            "sqrt_recipm1_abar": np.sqrt(1.0 / abar - 1.0),
            "post_var": post_var,
            "post_logvar_clipped": np.log(np.append(post_var[1], post_var[1:])),
            "post_coef_x0": betas * np.sqrt(abar_prev) / (1.0 - abar),
            "post_coef_xt": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
            "fixedlarge_logvar": np.log(np.append(post_var[1], betas[1:])),
        }
        for name, arr in arrays.items():
            self.register_buffer(name, torch.from_numpy(arr).float(), persistent=False)
        self.abar_T = float(abar[-1])
        self.sqrt_abar_T = float(np.sqrt(abar[-1]))

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def _at(arr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return arr[t].view(-1, 1, 1, 1)

    @property
    def out_channels_factor(self) -> int:
        return 2 if self.variant.learned_var else 1

    # -- forward process -------------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε (Eq. 4)."""
        return self._at(self.sqrt_abar, t) * x0 + self._at(self.sqrt_one_minus_abar, t) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean μ̃_t(x_t, x0) and clipped log variance log β̃_t of q(x_{t-1} | x_t, x0) (Eq. 7)."""
        mean = self._at(self.post_coef_x0, t) * x0 + self._at(self.post_coef_xt, t) * xt
        return mean, self._at(self.post_logvar_clipped, t).expand_as(xt)

    def predict_x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self._at(self.sqrt_recip_abar, t) * xt - self._at(self.sqrt_recipm1_abar, t) * eps

    def predict_x0_from_xprev(self, xt: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor) -> torch.Tensor:
        """Invert the posterior mean: x0 = (μ - c_xt x_t) / c_x0."""
        return (xprev - self._at(self.post_coef_xt, t) * xt) / self._at(self.post_coef_x0, t)

    # -- reverse process -------------------------------------------------------------------------------------
    def p_mean_variance(self, model: nn.Module, xt: torch.Tensor, t: torch.Tensor, *,
                        clip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, log variance, predicted x0, raw network output) of p_θ(x_{t-1} | x_t).

        The network may run under bf16 autocast; everything after it is float32."""
        out = model(xt, t).float()
        c = xt.shape[1]
        if self.variant.var_type == "learned":
            pred, logvar = out[:, :c], out[:, c:]
        else:
            pred = out
            table = self.fixedlarge_logvar if self.variant.var_type == "fixedlarge" else self.post_logvar_clipped
            logvar = self._at(table, t).expand_as(xt)
        if self.variant.mean_type == "eps":
            x0 = self.predict_x0_from_eps(xt, t, pred)
            if clip:
                x0 = x0.clamp(-1.0, 1.0)
            mean, _ = self.q_posterior(x0, xt, t)
        else:  # 'xprev': the network outputs the mean itself
            mean = pred
            x0 = self.predict_x0_from_xprev(xt, t, pred)
            if clip:
                x0 = x0.clamp(-1.0, 1.0)
        return mean, logvar, x0, out

    def vb_terms_bpd(self, model: nn.Module, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, *,
                     clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: L_{t-1} in bits/dim (KL to the posterior; the decoder NLL where t = 0), and predicted x0."""
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        mean, logvar, pred_x0, _ = self.p_mean_variance(model, xt, t, clip=clip)
        kl = nats_to_bits_per_dim(mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)))
        nll = -nats_to_bits_per_dim(mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)))
        return torch.where(t == 0, nll, kl), pred_x0

    # -- training --------------------------------------------------------------------------------------------
    def training_loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-image loss of the variant's objective (mean over the batch is the training loss)."""
        xt = self.q_sample(x0, t, noise)
        if self.variant.loss_type == "kl":
            return self.vb_terms_bpd(model, x0, xt, t, clip=False)[0]
        if self.variant.learned_var:
            raise ValueError("the MSE objective does not train a variance; use loss 'kl' with a learned Σ")
        target = noise if self.variant.mean_type == "eps" else self.q_posterior(x0, xt, t)[0]
        return mean_flat((model(xt, t).float() - target) ** 2)

    # -- sampling (Algorithm 2) ------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               clip: bool = True, keep_x0_at: tuple[int, ...] = (), keep: int = 0) -> "SampleResult":
        """Ancestral sampling from x_T ~ N(0, I); no noise is added at the last step (the mean is shown).

        `keep_x0_at`: 0-indexed steps at which the predicted x0 of the first `keep` chains is recorded
        (progressive generation, DDPM Fig. 6).
        """
        device = self.betas.device
        x = torch.randn(shape, generator=generator, device=device)
        frames = []
        keep_set = set(keep_x0_at)
        for i in reversed(range(self.num_steps)):
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)
            mean, logvar, x0, _ = self.p_mean_variance(model, x, t, clip=clip)
            if i in keep_set:
                frames.append(x0[:keep].clone())
            if i > 0:
                x = mean + torch.exp(0.5 * logvar) * torch.randn(shape, generator=generator, device=device)
            else:
                x = mean
        return SampleResult(images=to_uint8(x), x0_frames=torch.stack(frames, 1) if frames else None,
                            frame_steps=tuple(sorted(keep_set, reverse=True)))

    # -- evaluation bound (official calc_bpd_loop) -----------------------------------------------------------
    @torch.inference_mode()
    def bpd_terms(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """For a batch: the terms L_{t-1} [B, T] (index i = t - 1), the prior L_T [B], and the MSE of the clipped
        predicted x0 [B, T] (on the [-1, 1] scale), each from one draw x_t ~ q(x_t | x0) per step."""
        b = x0.shape[0]
        terms = torch.empty(b, self.num_steps, device=x0.device)
        mse = torch.empty_like(terms)
        for i in reversed(range(self.num_steps)):
            t = torch.full((b,), i, device=x0.device, dtype=torch.long)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            term, pred_x0 = self.vb_terms_bpd(model, x0, self.q_sample(x0, t, noise), t, clip=True)
            terms[:, i] = term
            mse[:, i] = mean_flat((pred_x0 - x0) ** 2)
        prior = prior_kl(x0, self.sqrt_abar_T, 1.0 - self.abar_T)
        return {"terms": terms, "prior": prior, "mse": mse}


@dataclass(frozen=True)
class SampleResult:
    images: torch.Tensor                  # uint8 [B, C, H, W]
    x0_frames: torch.Tensor | None        # float [keep, frames, C, H, W] in [-1, 1]
    frame_steps: tuple[int, ...]          # the 0-indexed steps of the frames, in sampling order


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 {0..255}: round((x + 1) * 127.5), clipped."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 {0..255} -> float in [-1, 1] (the paper's linear scaling, §3.3)."""
    return x.float() / 127.5 - 1.0
