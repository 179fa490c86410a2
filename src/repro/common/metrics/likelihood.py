"""Variational-bound helpers of diffusion models on 8-bit images (DDPM, Ho et al. 2020, §3.3 and App. B).

Pure tensor functions, usable by any Gaussian diffusion model whose data are 8-bit images scaled to [-1, 1]:

- `normal_kl`: KL between two diagonal Gaussians, elementwise, in nats (the terms L_{t-1} of Eq. 5);
- `discretized_gaussian_log_likelihood`: log-probability of the 256-level pixel value under a Gaussian integrated
  over its bin (the decoder L_0, Eq. 13), elementwise, in nats;
- `prior_kl`: the prior term L_T = KL(q(x_T | x_0) || N(0, I)) per image;
- `mean_flat`, `nats_to_bits_per_dim`: reductions to bits/dim.

The DDPM code computes these terms in `diffusion_tf/utils.py` (`normal_kl`, `discretized_gaussian_log_likelihood`)
and `diffusion_utils_2.py` (`_prior_bpd`, `_vb_terms_bpd`) of hojonathanho/diffusion@c461299 (ddpm sheet §4). One
deliberate difference: the official decoder uses the tanh approximation of the standard normal CDF; here the exact
CDF (`torch.special.ndtr`, in float64) is used, which changes L_0 by far less than the reported digits (the
approximation's absolute error is below 2e-4 on a CDF value). The official floor of every bin's probability at
1e-12 is kept.
"""

from __future__ import annotations

import math

import torch

LOG2 = math.log(2.0)
#: half-width of one pixel bin on the [-1, 1] scale: 256 levels 2/255 apart (DDPM Eq. 13)
BIN_HALF_WIDTH = 1.0 / 255.0
#: pixels beyond these values are the edge bins, open to -inf / +inf (official code: x < -0.999, x > 0.999)
EDGE = 0.999
_LOG_FLOOR = 1e-12  # the official code floors probabilities at 1e-12 before the log


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all dimensions but the first (per-example mean over pixels and channels)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def nats_to_bits_per_dim(nats_per_dim: torch.Tensor | float) -> torch.Tensor | float:
    """A per-dimension negative log-likelihood in nats -> bits/dim (divide by ln 2)."""
    return nats_per_dim / LOG2


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
              logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats (arguments broadcast)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) in nats, elementwise, for pixels x on the 256-level grid of [-1, 1].

    P(x) = integral of N(mean, exp(log_scale)^2) over [x - 1/255, x + 1/255], with the first and last bins open to
    -inf and +inf (DDPM Eq. 13). The probabilities of the 256 bins sum to one for any mean and scale (up to the
    floor below).

    As the official `utils.discretized_gaussian_log_likelihood` (hojonathanho/diffusion@c461299
    diffusion_tf/utils.py), every bin's probability, the open edge bins included, is floored at 1e-12 before the
    log, so one pixel costs at most -log(1e-12) = 27.63 nats (39.86 bits). The arithmetic runs in float64 on
    log-CDFs: a difference of two `ndtr` values loses its digits in the tails (float32 `ndtr` rounds to 0 or 1
    beyond about 5.5 standard deviations; torch's float64 `ndtr` is off by 2% at -8 and returns 0 at -9), so the
    interior bins of a badly fitted pixel would be floored long before their true probability reaches 1e-12.
    The result has the dtype of `mean`.
    """
    if x.shape != mean.shape:
        raise ValueError(f"x {tuple(x.shape)} and mean {tuple(mean.shape)} must have the same shape")
    out_dtype = torch.promote_types(mean.dtype, log_scale.dtype)
    x64, mean64, log_scale64 = x.double(), mean.double(), log_scale.double()
    centred = x64 - mean64
    inv_std = torch.exp(-log_scale64)
    upper = inv_std * (centred + BIN_HALF_WIDTH)
    lower = inv_std * (centred - BIN_HALF_WIDTH)
    log_floor = math.log(_LOG_FLOOR)
    log_cdf_upper = torch.special.log_ndtr(upper).clamp_min(log_floor)    # log P(X <= x + 1/255): lowest bin
    log_sf_lower = torch.special.log_ndtr(-lower).clamp_min(log_floor)    # log P(X >= x - 1/255): highest bin
    # interior bins: P = Phi(a) - Phi(b) with (a, b) = (upper, lower), or in the upper tail (-lower, -upper), so
    # that a is never far right of 0; then log P = log Phi(a) + log1p(-Phi(b) / Phi(a)) from log_ndtr alone, which
    # stays accurate to the floor (torch's `ndtr` loses all digits below about -8 even in float64)
    upper_tail = lower > 0
    log_a = torch.special.log_ndtr(torch.where(upper_tail, -lower, upper))
    log_b = torch.special.log_ndtr(torch.where(upper_tail, -upper, lower))
    log_delta = (log_a + torch.log1p(-torch.exp(log_b - log_a))).clamp_min(log_floor)
    out = torch.where(x64 < -EDGE, log_cdf_upper, torch.where(x64 > EDGE, log_sf_lower, log_delta))
    return out.to(out_dtype)


def prior_kl(x_start: torch.Tensor, sqrt_alphas_cumprod_T: float | torch.Tensor,
             one_minus_alphas_cumprod_T: float | torch.Tensor) -> torch.Tensor:
    """L_T per image in bits/dim: KL(q(x_T | x_0) || N(0, I)) with q(x_T | x_0) = N(sqrt(abar_T) x_0, 1 - abar_T).

    Computed in float64: the term is ~1e-5 and -1 + v - log v cancels badly in float32 when v = 1 - abar_T ~ 1.
    """
    mean = sqrt_alphas_cumprod_T * x_start.double()
    logvar = torch.log(torch.as_tensor(one_minus_alphas_cumprod_T, dtype=torch.float64, device=x_start.device))
    kl = normal_kl(mean, logvar.expand_as(mean), torch.zeros_like(mean), torch.zeros_like(mean))
    return nats_to_bits_per_dim(mean_flat(kl))


def uniform_bits_per_dim(levels: int = 256) -> float:
    """bits/dim of any data under the uniform model over `levels` values per dimension (log2(levels))."""
    return math.log2(levels)
