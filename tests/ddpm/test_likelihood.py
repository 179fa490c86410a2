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
