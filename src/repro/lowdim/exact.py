"""Tier 1: a Gaussian target on a random k-dimensional linear subspace of R^d, with the exact score.

In a basis aligned with the subspace the coordinates decouple: k "signal" coordinates with data variance 1 and
d - k "null" coordinates with data variance 0. Every X_t and every sampler iterate Y_t is a centred Gaussian with
diagonal covariance, so the whole sampler reduces to one variance recursion per coordinate class (sheet §6):

    lambda_t = abar_t s0 + 1 - abar_t                   (variance of X_t; s0 = 1 signal, 0 null)
    v_T = 1,   v_{t-1} = ((1 - eta_t / lambda_t)^2 v_t + sigma_t^2) / alpha_t     (variance of Y_t)

and KL(p_X1 || p_Y1) = k KL_sig + (d - k) KL_null in closed form. TV has no closed form, but the log-likelihood
ratio is an affine function of two independent chi-square variables, so TV reduces to a one-dimensional integral of
regularised incomplete gamma functions (`tv_gaussian`), computed by adaptive quadrature: accurate, not a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special, stats

from repro.lowdim.schedules import Schedule, coefficients


def kl_var(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """KL(N(0, a) || N(0, b)) in one dimension, accurate when a/b is close to 1."""
    u = np.asarray(a, dtype=float) / np.asarray(b, dtype=float) - 1.0
    small = np.abs(u) < 1e-4
    series = u**2 / 2 - u**3 / 3 + u**4 / 4
    with np.errstate(invalid="ignore", divide="ignore"):
        direct = u - np.log1p(u)
    return 0.5 * np.where(small, series, direct)


def forward_variance(schedule: Schedule, s0: float) -> np.ndarray:
    """lambda_t, t = 1..T: variance of one coordinate of X_t when the data coordinate has variance s0."""
    return schedule.abar * s0 + 1.0 - schedule.abar


def sampler_variance(schedule: Schedule, design: str, s0: float) -> float:
    """Var(Y_1) of one coordinate: the recursion above from v_T = 1 (Y_T ~ N(0, 1)) down to t = 1."""
    eta, sigma2 = coefficients(schedule, design)
    lam = forward_variance(schedule, s0)
    alpha = schedule.alpha
    v = 1.0
    for i in range(schedule.T - 1, 0, -1):  # i = t - 1 for t = T .. 2
        v = ((1.0 - eta[i] / lam[i]) ** 2 * v + sigma2[i]) / alpha[i]
    return v


def path_kl_per_coordinate(schedule: Schedule, design: str, s0: float) -> float:
    """KL between the forward and sampler path measures over (X_T, ..., X_1), one coordinate.

    = KL(p_XT || N(0,1)) + sum_{t=2}^T E_{X_t} KL(p(x_{t-1} | X_t) || q(x_{t-1} | X_t)): an upper bound on the
    marginal KL at t = 1 (chain rule). Here p(x_{t-1}|x_t) = N(c x_t, s^2) and q(x_{t-1}|x_t) = N(m x_t, r^2).
    """
    eta, sigma2 = coefficients(schedule, design)
    lam = forward_variance(schedule, s0)
    alpha = schedule.alpha
    lam_prev, lam_t, a = lam[:-1], lam[1:], alpha[1:]
    c = np.sqrt(a) * lam_prev / lam_t
    s2 = lam_prev * (1.0 - a * lam_prev / lam_t)
    m = (1.0 - eta[1:] / lam_t) / np.sqrt(a)
    r2 = sigma2[1:] / a
    steps = kl_var(s2, r2) + 0.5 * (c - m) ** 2 * lam_t / r2
    return float(kl_var(lam[-1], 1.0) + steps.sum())


def tv_gaussian(k: int, a_sig: float, b_sig: float, m: int, a_null: float, b_null: float) -> float:
    """TV between N(0, diag(a_sig I_k, a_null I_m)) and N(0, diag(b_sig I_k, b_null I_m)), by quadrature.

    With rho = a/b per class, log(p/q)(x) = L = c + g_s S + g_n N where S ~ chi2_k and N ~ chi2_m under p,
    c = -(k log rho_s + m log rho_n)/2 and g = (rho - 1)/2. TV = E_p[(1 - e^{-L})^+]. Given S, the expectation over N
    is closed form: E[e^{tN} 1{N in A}] = rho_n^{-m/2} P(Gamma(m/2, scale 2/rho_n) in A) for t = -g_n.
    """
    rho_s, rho_n = a_sig / b_sig, (a_null / b_null if m else 1.0)
    g_s, g_n = 0.5 * (rho_s - 1.0), 0.5 * (rho_n - 1.0)
    c = -0.5 * (k * math.log(rho_s) + m * math.log(rho_n))
    half_m = 0.5 * m

    def inner(s: float) -> float:
        cp = c + g_s * s
        if m == 0 or abs(g_n) * m < 1e-15:
            return -math.expm1(-cp) if cp > 0 else 0.0
        log_w = 0.5 * k * math.log(rho_s) - g_s * s  # = -c' - (m/2) log rho_n, kept in logs: m may be 1e4
        if g_n < 0:  # L > 0 iff N < u0
            if cp <= 0:
                return 0.0
            u0 = cp / (-g_n)
            p_region = special.gammainc(half_m, u0 / 2.0)
            tilted = special.gammainc(half_m, u0 * rho_n / 2.0)
        else:  # L > 0 iff N > u1
            u1 = max(-cp / g_n, 0.0)
            p_region = special.gammaincc(half_m, u1 / 2.0)
            tilted = special.gammaincc(half_m, u1 * rho_n / 2.0)
        second = math.exp(log_w + math.log(tilted)) if tilted > 0 else 0.0
        return max(p_region - second, 0.0)

    dens = stats.chi2(k)
    hi = dens.isf(1e-14)
    f = lambda s: inner(s) * dens.pdf(s)  # noqa: E731
    mid = dens.median()
    val = sum(integrate.quad(f, lo, up, limit=200, epsabs=1e-13, epsrel=1e-10)[0]
              for lo, up in ((0.0, mid), (mid, hi)))
    return float(min(max(val, 0.0), 1.0))


def tv_gaussian_mc(k: int, a_sig: float, b_sig: float, m: int, a_null: float, b_null: float,
                   n: int, rng: np.random.Generator) -> tuple[float, float]:
    """Monte Carlo TV (same law as `tv_gaussian`) from samples of p: (estimate, standard error)."""
    rho_s, rho_n = a_sig / b_sig, (a_null / b_null if m else 1.0)
    S = rng.chisquare(k, n)
    N = rng.chisquare(m, n) if m else np.zeros(n)
    L = -0.5 * (k * np.log(rho_s) + m * np.log(rho_n)) + 0.5 * (rho_s - 1) * S + 0.5 * (rho_n - 1) * N
    vals = np.where(L > 0, -np.expm1(-L), 0.0)
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class ExactResult:
    schedule: str
    design: str
    T: int
    d: int
    k: int
    kl: float
    tv: float
    pinsker: float
    path_kl: float
    kl_signal: float
    kl_null: float


def exact_errors(schedule: Schedule, design: str, k: int, dims: list[int]) -> list[ExactResult]:
    """KL, TV and path KL between X_1 and Y_1 for each ambient dimension d (all share one recursion)."""
    lam_sig, lam_null = forward_variance(schedule, 1.0)[0], forward_variance(schedule, 0.0)[0]
    v_sig, v_null = sampler_variance(schedule, design, 1.0), sampler_variance(schedule, design, 0.0)
    kl_sig, kl_null = float(kl_var(lam_sig, v_sig)), float(kl_var(lam_null, v_null))
    pk_sig = path_kl_per_coordinate(schedule, design, 1.0)
    pk_null = path_kl_per_coordinate(schedule, design, 0.0)
    out = []
    for d in dims:
        if d < k:
            raise ValueError(f"ambient dimension d={d} is below the intrinsic dimension k={k}")
        kl = k * kl_sig + (d - k) * kl_null
        out.append(ExactResult(schedule.name, design, schedule.T, d, k, kl,
                               tv_gaussian(k, lam_sig, v_sig, d - k, lam_null, v_null),
                               min(1.0, math.sqrt(kl / 2)), k * pk_sig + (d - k) * pk_null, kl_sig, kl_null))
    return out
