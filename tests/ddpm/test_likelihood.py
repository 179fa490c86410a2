"""The bits/dim helpers against closed forms (repro.common.metrics.likelihood)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from repro.common.metrics.likelihood import (discretized_gaussian_log_likelihood, mean_flat, nats_to_bits_per_dim,
                                             normal_kl, prior_kl, uniform_bits_per_dim)

torch.set_num_threads(1)
GRID = torch.linspace(-1.0, 1.0, 256, dtype=torch.float64)   # the 256 pixel levels on the [-1, 1] scale


def test_uniform_noise_under_uniform_model_is_8_bits_per_dim():
    x = torch.randint(0, 256, (4, 3, 8, 8))
    nll_nats = torch.full(x.shape, math.log(256.0), dtype=torch.float64)   # -log(1/256) per dimension
    bpd = nats_to_bits_per_dim(mean_flat(nll_nats))
    assert torch.allclose(bpd, torch.full((4,), 8.0, dtype=torch.float64))
    assert uniform_bits_per_dim() == 8.0


@pytest.mark.parametrize("m1,s1,m2,s2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.5, 0.1, 1.0, 0.3)])
def test_normal_kl_matches_numerical_integral(m1, s1, m2, s2):
    got = normal_kl(torch.tensor(m1), torch.tensor(math.log(s1 ** 2)), torch.tensor(m2),
                    torch.tensor(math.log(s2 ** 2))).item()
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    want, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), m1 - 12 * s1, m1 + 12 * s1)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("mean,scale", [(0.0, 0.5), (0.37, 0.01), (-0.99, 0.2), (0.9, 3.0), (0.0, 1e-3)])
def test_discretized_gaussian_is_a_distribution_over_the_256_levels(mean, scale):
    means = torch.full_like(GRID, mean)
    logp = discretized_gaussian_log_likelihood(GRID, means, torch.full_like(GRID, math.log(scale)))
    assert torch.exp(logp).sum().item() == pytest.approx(1.0, abs=1e-9)


def test_discretized_gaussian_bins_match_scipy():
    mean, scale = 0.1, 0.05
    logp = discretized_gaussian_log_likelihood(GRID, torch.full_like(GRID, mean), torch.full_like(GRID, math.log(scale)))
    d = stats.norm(mean, scale)
    want = d.cdf(GRID.numpy() + 1 / 255) - d.cdf(GRID.numpy() - 1 / 255)
    want[0] = d.cdf(-1 + 1 / 255)            # edge bins are open
    want[-1] = d.sf(1 - 1 / 255)
    keep = want > 1e-12
    np.testing.assert_allclose(torch.exp(logp).numpy()[keep], want[keep], rtol=1e-7, atol=1e-14)


def test_prior_kl_closed_form():
    abar = 4.0e-5
    x0 = torch.tensor([[-1.0, 0.0, 0.5, 1.0]])
    var = 1 - abar
    want = np.mean([0.5 * (var + abar * v ** 2 - 1 - math.log(var)) for v in (-1.0, 0.0, 0.5, 1.0)]) / math.log(2)
    got = prior_kl(x0, math.sqrt(abar), 1 - abar)
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert 1e-6 < got.item() < 1e-4  # DDPM §4: L_T ~ 1e-5 bits/dim at the paper's schedule


# -- the official floor and float64 (hojonathanho/diffusion@c461299 diffusion_tf/utils.py
#    discretized_gaussian_log_likelihood: log(max(p, 1e-12)) on the edge bins and on the interior bins) -----------
FLOOR_NATS = -math.log(1e-12)          # 27.631021115928547 nats: the most one pixel can cost


def official_floored_logp(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The official formula with the exact normal CDF (scipy, float64) in place of its tanh approximation."""
    upper, lower = (x - mean + 1 / 255) / scale, (x - mean - 1 / 255) / scale
    cdf_plus, sf_min = stats.norm.cdf(upper), stats.norm.sf(lower)
    delta = np.where(lower > 0, stats.norm.sf(lower) - stats.norm.sf(upper), cdf_plus - stats.norm.cdf(lower))
    return np.where(x < -0.999, np.log(np.maximum(cdf_plus, 1e-12)),
                    np.where(x > 0.999, np.log(np.maximum(sf_min, 1e-12)), np.log(np.maximum(delta, 1e-12))))


def test_badly_fitted_pixels_cost_at_most_the_official_floor():
    # edge bins and an interior bin, each 100-200 standard deviations from its mean: without the floor the edge
    # bins cost ~2e4 nats each (log_ndtr(-199.6)); the official code charges -log(1e-12) for every one of them
    x = torch.tensor([-1.0, 1.0, 0.0, 0.0])
    mean = torch.tensor([1.0, -1.0, 1.0, -1.0])
    log_scale = torch.full_like(x, math.log(0.01))
    got = discretized_gaussian_log_likelihood(x, mean, log_scale)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), -FLOOR_NATS, rtol=1e-6)
    # in bits/dim, the bound of one image whose pixels are all that badly fitted: 27.631 / ln 2 = 39.863
    assert nats_to_bits_per_dim(-got.double().mean()).item() == pytest.approx(39.86313713864835, rel=1e-6)


def test_float32_inputs_are_computed_in_float64():
    # pixels 3..9 standard deviations from the mean on both sides, interior and edge bins: float32 inputs give
    # the float64 answer (in float32 ndtr, the bins of the 6-9 sigma pixels would round to the floor or to 0)
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, 400)
    x = levels / 127.5 - 1.0
    scale = np.full(400, 0.02)
    mean = x + rng.choice([-1, 1], 400) * rng.uniform(3, 9, 400) * scale
    want = official_floored_logp(x, mean, scale)
    for dtype in (torch.float32, torch.float64):
        got = discretized_gaussian_log_likelihood(torch.tensor(x, dtype=dtype), torch.tensor(mean, dtype=dtype),
                                                  torch.tensor(np.log(scale), dtype=dtype))
        # float32 inputs round x and mean by ~6e-8, i.e. ~3e-6 sigma: a relative 1e-4 on a log-probability of ~-20
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4 if dtype == torch.float32 else 1e-9)
    deep = (want < -20) & (want > -FLOOR_NATS + 1e-6)
    assert deep.sum() > 10 and (want == -FLOOR_NATS).any()   # deep tails above the floor, and floored pixels


def test_realistic_pixels_agree_with_the_unfloored_likelihood():
    # well-fitted pixels (within 2 sigma of a decoder std of ~0.01, the size of the DDPM decoder's sigma_1): the
    # floor never binds and the result is the exact bin probability
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, 1000) / 127.5 - 1.0
    scale = np.full(1000, 0.0106)
    mean = x + rng.normal(0, 1, 1000) * scale
    got = discretized_gaussian_log_likelihood(torch.tensor(x), torch.tensor(mean), torch.tensor(np.log(scale)))
    d = stats.norm(mean, scale)
    exact = np.log(np.where(x < -0.999, d.cdf(x + 1 / 255), np.where(x > 0.999, d.sf(x - 1 / 255),
                                                                      d.cdf(x + 1 / 255) - d.cdf(x - 1 / 255))))
    np.testing.assert_allclose(got.numpy(), exact, rtol=1e-6)
