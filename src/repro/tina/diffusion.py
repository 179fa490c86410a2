"""The DDPM objective and ancestral sampler Tina trains its parameter generator with.

Tina (G.pt-derived code): 1000 steps, linear beta schedule, the network predicts x0 (`predict_xstart=True`), MSE loss,
uniform timesteps; sampling is the full 1000-step `p_sample_loop` (paper sheet section 2, "Diffusion"). The schedule
and posterior are those of Ho et al. 2020 (eqs. 4, 6, 7): q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) and the
posterior mean. The reverse-process variance is a choice (Ho et al. section 3.2: sigma_t^2 = beta_t or beta_tilde_t):

* `fixed_large` (Tina): sigma_t^2 = beta_t for t >= 1, and beta_tilde_1 at t = 0 (where no noise is added anyway).
  Tina's `create_diffusion(learn_sigma=False, sigma_small=False)` selects `ModelVarType.FIXED_LARGE`
  ([Tina-repo `Gpt/diffusion/__init__.py`, commit e7596f26]), whose variance in the guided-diffusion code it derives
  from is `np.append(posterior_variance[1], betas[1:])`.
* `fixed_small`: the posterior variance beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).

Parameters are not bounded, so predicted x0 is not clipped.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from repro.common.progress import progress


def spaced_timesteps(timesteps: int, count: int) -> list[int]:
    """`count` of the `timesteps` steps, evenly spaced from 0 to T-1 (improved-diffusion's `space_timesteps` with one
    section, which Tina's `create_diffusion(timestep_respacing=...)` uses; [Tina-repo `Gpt/diffusion/__init__.py`])."""
    if not 0 < count <= timesteps:
        raise ValueError(f"sampling steps {count} must be in 1..{timesteps}")
    if count == 1:
        return [timesteps - 1]
    stride = (timesteps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


def _schedule(abar: Tensor, variance: str) -> dict[str, Tensor]:
    """Posterior coefficients and reverse variance of the chain whose cumulative alphas are `abar` (float64)."""
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    betas = 1.0 - abar / abar_prev
    alphas = 1.0 - betas
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return {
        # posterior mean = c0 * x0 + ct * x_t (Ho et al. eq. 7)
        "post_c0": betas * abar_prev.sqrt() / (1.0 - abar),
        "post_ct": (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
        # log of the reverse-process variance; t = 0 takes beta_tilde_1 in both (its posterior variance is 0)
        "logvar": torch.log(torch.cat([post_var[1:2], (betas if variance == "fixed_large" else post_var)[1:]])),
    }


class GaussianDiffusion(nn.Module):
    """Training uses all `timesteps`; sampling walks `sample_steps` of them (all by default, as Tina does). With
    fewer, the chain is respaced as in improved-diffusion: beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}} over the kept
    steps t_i, the network still sees the original t_i."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2,
                 variance: str = "fixed_large", sample_steps: int | None = None):
        super().__init__()
        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"unknown sampler variance '{variance}' (use fixed_large or fixed_small)")
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        abar = torch.cumprod(1.0 - betas, 0)
        used = spaced_timesteps(timesteps, sample_steps or timesteps)
        buffers = {"sqrt_abar": abar.sqrt(), "sqrt_one_minus_abar": (1.0 - abar).sqrt(),
                   **_schedule(abar[used], variance)}
        for k, v in buffers.items():
            self.register_buffer(k, v.float(), persistent=False)
        self.register_buffer("timestep_map", torch.tensor(used, dtype=torch.long), persistent=False)
        self.timesteps = timesteps
        self.variance = variance

    @staticmethod
    def _at(a: Tensor, t: Tensor) -> Tensor:
        return a[t].unsqueeze(-1)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return self._at(self.sqrt_abar, t) * x0 + self._at(self.sqrt_one_minus_abar, t) * noise

    def loss(self, model: Callable[[Tensor, Tensor], Tensor], x0: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error of the x0 prediction at a uniformly drawn timestep."""
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        return (model(self.q_sample(x0, t, noise), t) - x0).square().mean()

    @torch.inference_mode()
    def sample(self, model: Callable[[Tensor, Tensor], Tensor], shape: tuple[int, ...], device: torch.device,
               generator: torch.Generator | None = None, desc: str = "sampling") -> Tensor:
        """Ancestral sampling x_T ~ N(0, I) -> x_0 with the x0-predicting model over the sampling steps."""
        x = torch.randn(shape, device=device, generator=generator)
        n = len(self.timestep_map)
        for i in progress(reversed(range(n)), desc=desc, total=n):
            idx = torch.full((shape[0],), i, device=device, dtype=torch.long)
            x0 = model(x, self.timestep_map[idx])
            mean = self._at(self.post_c0, idx) * x0 + self._at(self.post_ct, idx) * x
            if i > 0:
                noise = torch.randn(shape, device=device, generator=generator)
                x = mean + (0.5 * self._at(self.logvar, idx)).exp() * noise
            else:
                x = mean
        return x
