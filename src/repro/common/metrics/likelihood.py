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
CDF (`torch.special.ndtr`) is used, which changes L_0 by far less than the reported digits (the approximation's
absolute error is below 2e-4 on a CDF value).
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
    -inf and +inf (DDPM Eq. 13). The probabilities of the 256 bins sum to one for any mean and scale.
    """
    if x.shape != mean.shape:
        raise ValueError(f"x {tuple(x.shape)} and mean {tuple(mean.shape)} must have the same shape")
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (centred + BIN_HALF_WIDTH)
    lower = inv_std * (centred - BIN_HALF_WIDTH)
    log_cdf_upper = torch.special.log_ndtr(upper)              # log P(X <= x + 1/255): lowest bin
    log_sf_lower = torch.special.log_ndtr(-lower)              # log P(X >= x - 1/255): highest bin
    # interior bins: P = Phi(upper) - Phi(lower); in the upper tail use the survival functions, which keeps the
    # difference accurate where both CDFs round to 1
    upper_tail = lower > 0
    delta = torch.where(upper_tail, torch.special.ndtr(-lower) - torch.special.ndtr(-upper),
                        torch.special.ndtr(upper) - torch.special.ndtr(lower))
    log_delta = torch.log(delta.clamp_min(_LOG_FLOOR))
    return torch.where(x < -EDGE, log_cdf_upper, torch.where(x > EDGE, log_sf_lower, log_delta))


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
