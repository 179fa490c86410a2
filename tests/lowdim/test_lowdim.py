"""lowdim: the coefficient designs, the exact tier's closed forms, and the Monte Carlo estimators against them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from repro.lowdim.analysis import dim_dependence, loglog_slope
from repro.lowdim.curved import (EmpiricalTarget, GaussianSubspaceTarget, fourier_manifold, path_kl_mc,
                                 random_basis, run_sampler)
from repro.lowdim.exact import (exact_errors, forward_variance, kl_var, path_kl_per_coordinate, sampler_variance,
                                tv_gaussian, tv_gaussian_mc)
from repro.lowdim.schedules import DESIGNS, coefficients, ddpm_linear_schedule, li_yan_schedule


def test_proposed_variance_is_ddpm_posterior_variance():
    """sigma*^2 / alpha_t = beta-tilde_t (sheet §4), on DDPM's own schedule."""
    s = ddpm_linear_schedule(1000)
    _, sigma2 = coefficients(s, "proposed")
    beta_tilde = s.beta[1:] * (1 - s.abar[:-1]) / (1 - s.abar[1:])
    np.testing.assert_allclose(sigma2[1:] / s.alpha[1:], beta_tilde, rtol=1e-10)


def test_li_yan_schedule_shape():
    s = li_yan_schedule(100)
    assert s.beta[0] == pytest.approx(100.0 ** -2)
    rate = 4 * math.log(100) / 100
    assert s.beta.max() == pytest.approx(rate) and np.all(np.diff(s.beta[1:]) >= 0)
    # as the formula is written, beta_2 = rate * beta_1 * (1 + rate) is below beta_1: the schedule dips once
    assert s.beta[1] == pytest.approx(rate * s.beta[0] * (1 + rate))
    assert s.abar[-1] < 1e-3


def test_kl_var_matches_numerical_integral():
    for a, b in ((1.0, 2.0), (0.3, 0.1), (1.0, 1.0 + 1e-6)):
        p = lambda x: math.exp(-x * x / (2 * a)) / math.sqrt(2 * math.pi * a)  # noqa: E731
        lq = lambda x: -x * x / (2 * b) - 0.5 * math.log(2 * math.pi * b)  # noqa: E731
        f = lambda x: p(x) * (math.log(p(x)) - lq(x)) if p(x) > 0 else 0.0  # noqa: E731
        lim = 12 * math.sqrt(max(a, b))
        num = integrate.quad(f, -lim, lim, epsabs=1e-14)[0]
        assert float(kl_var(a, b)) == pytest.approx(num, rel=1e-6, abs=1e-13)


def test_proposed_design_is_exact_on_null_coordinates():
    """Data variance 0 (directions off the subspace): the proposed sampler recovers X_1's variance exactly."""
    for T in (100, 1000):
        s = li_yan_schedule(T)
        lam1 = forward_variance(s, 0.0)[0]
        assert sampler_variance(s, "proposed", 0.0) == pytest.approx(lam1, rel=1e-9)
        assert path_kl_per_coordinate(s, "proposed", 0.0) < 1e-9
        assert sampler_variance(s, "competing", 0.0) > 1.01 * lam1


def test_error_grows_with_d_except_for_proposed():
    s = li_yan_schedule(200)
    dims = [10, 100, 1000]
    kl = {des: [r.kl for r in exact_errors(s, des, 8, dims)] for des in DESIGNS}
    assert kl["proposed"][0] == pytest.approx(kl["proposed"][-1], rel=1e-6)
    for des in ("competing", "ddpm_large"):
        assert loglog_slope(dims[1:], kl[des][1:]) > 0.9


def test_tv_quadrature_matches_monte_carlo():
    rng = np.random.default_rng(0)
    cases = [(8, 1.0, 0.9, 92, 0.01, 0.012), (8, 1.0, 1.1, 0, 1.0, 1.0), (4, 0.5, 0.5, 200, 0.2, 0.19),
             (8, 1.0, 0.97, 9992, 0.001, 0.00101)]
    for k, a_s, b_s, m, a_n, b_n in cases:
        exact = tv_gaussian(k, a_s, b_s, m, a_n, b_n)
        est, se = tv_gaussian_mc(k, a_s, b_s, m, a_n, b_n, 200_000, rng)
        assert abs(exact - est) < 4 * se + 1e-4, (exact, est, se)
    assert tv_gaussian(8, 1.0, 1.0, 100, 0.1, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_tv_respects_pinsker_and_bounds():
    s = li_yan_schedule(100)
    for des in DESIGNS:
        for r in exact_errors(s, des, 8, [10, 1000]):
            assert 0.0 <= r.tv <= min(1.0, math.sqrt(r.kl / 2)) + 1e-9
            assert r.kl <= r.path_kl + 1e-9  # chain rule: the marginal KL is below the path KL


def test_path_kl_monte_carlo_matches_closed_form():
    """The Tier 2 estimator on the Tier 1 Gaussian target agrees with the closed form within its CI."""
    rng = np.random.default_rng(1)
    d, k = 40, 8
    s = li_yan_schedule(60)
    target = GaussianSubspaceTarget(random_basis(d, k, rng))
    for r in path_kl_mc(target, s, list(DESIGNS), 3000, rng):
        exact = k * path_kl_per_coordinate(s, r.design, 1.0) + (d - k) * path_kl_per_coordinate(s, r.design, 0.0)
        assert abs(r.mean - exact) < 4 * r.stderr + 1e-3, (r.design, r.mean, r.stderr, exact)


def test_stratified_steps_are_unbiased():
    rng = np.random.default_rng(2)
    d, k = 20, 8
    s = li_yan_schedule(80)
    target = GaussianSubspaceTarget(random_basis(d, k, rng))
    exact = k * path_kl_per_coordinate(s, "competing", 1.0) + (d - k) * path_kl_per_coordinate(s, "competing", 0.0)
    est = [path_kl_mc(target, s, ["competing"], 400, rng, steps=20)[0].mean for _ in range(30)]
    assert abs(np.mean(est) - exact) < 4 * np.std(est, ddof=1) / math.sqrt(len(est))


def test_sampler_matches_variance_recursion():
    rng = np.random.default_rng(3)
    d, k = 30, 8
    basis = random_basis(d, k, rng)
    s = li_yan_schedule(50)
    for des in ("proposed", "competing"):
        y = run_sampler(GaussianSubspaceTarget(basis), s, des, 4000, rng)
        sig = ((y @ basis) ** 2).mean()
        null = ((y ** 2).sum(1) - ((y @ basis) ** 2).sum(1)).mean() / (d - k)
        assert sig == pytest.approx(sampler_variance(s, des, 1.0), rel=0.05)
        assert null == pytest.approx(sampler_variance(s, des, 0.0), rel=0.05)


def test_empirical_score_matches_finite_difference():
    rng = np.random.default_rng(4)
    target = EmpiricalTarget(fourier_manifold(20, 6, 2, 3.0, rng))
    x = rng.standard_normal((3, 6))
    abar = np.full(3, 0.6)
    score = target.score(x, abar)
    h = 1e-6
    for j in range(6):
        e = np.zeros(6)
        e[j] = h
        fd = (target.log_density(x + e, abar) - target.log_density(x - e, abar)) / (2 * h)
        np.testing.assert_allclose(score[:, j], fd, rtol=1e-5, atol=1e-6)


def test_score_error_increases_path_kl():
    rng = np.random.default_rng(5)
    target = EmpiricalTarget(fourier_manifold(64, 32, 4, 3.0, rng))
    res = {r.score_eps: r.mean for r in path_kl_mc(target, li_yan_schedule(40), ["proposed"], 200, rng,
                                                      score_eps=(0.0, 1.0))}
    assert res[1.0] > res[0.0] + 1.0


def test_dim_dependence_summary():
    import pandas as pd
    grid = pd.DataFrame({"design": ["a"] * 3, "T": [10] * 3, "d": [10, 100, 1000], "kl": [1.0, 10.0, 100.0]})
    r = dim_dependence(grid, "kl").iloc[0]
    assert r["ratio"] == pytest.approx(100.0) and r["slope"] == pytest.approx(1.0)
