"""Tier 2: data on a curved k-dimensional manifold in R^d, the exact score of the noised empirical mixture, and a
Monte Carlo estimate, with a confidence interval, of the KL divergence between forward and sampler path measures.

The target is the empirical distribution of N points x_i = Phi(u_i) on a random Fourier-feature embedding of
[0, 1]^k (sheet §6, Tier 2). Then p_{X_t} = (1/N) sum_i N(sqrt(abar_t) x_i, (1 - abar_t) I) and its score are exact,
no training. log p_{Y_1} has no closed form, so instead of KL(p_X1 || p_Y1) itself we estimate its chain-rule upper
bound, the KL between the path measures of (X_T, ..., X_1) and (Y_T, ..., Y_1):

    KL(p_XT || N(0, I)) + sum_{t=2}^T E[ log p(X_{t-1} | X_t) - log q(X_{t-1} | X_t) ],

with log p(x_{t-1} | x_t) = log p(x_t | x_{t-1}) + log p_{t-1}(x_{t-1}) - log p_t(x_t) (all exact here) and q the
sampler's Gaussian transition. It is the sum of the per-step errors that the paper's lower bound is about
("the error incurred within each denoising step"). The same estimator runs on the Tier 1 Gaussian target, where the
closed form (`exact.path_kl_per_coordinate`) checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import logsumexp

from repro.common.progress import progress
from repro.lowdim.schedules import Schedule, coefficients

LOG2PI = math.log(2 * math.pi)


class Target(Protocol):
    d: int

    def sample(self, abar: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...
    def log_density(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray: ...
    def score(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EmpiricalTarget:
    """The empirical distribution of `points` (N x d); every method takes one abar per row of x."""

    points: np.ndarray

    @property
    def d(self) -> int:
        return self.points.shape[1]

    def sample(self, abar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, len(self.points), size=len(abar))
        noise = rng.standard_normal((len(abar), self.d))
        return np.sqrt(abar)[:, None] * self.points[idx] + np.sqrt(1 - abar)[:, None] * noise

    def _logits(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        # -||x - sqrt(abar) x_i||^2 / (2 (1 - abar)), expanded so the N x d work is one matrix product
        sq = (x * x).sum(1)[:, None] - 2 * np.sqrt(abar)[:, None] * (x @ self.points.T) \
            + abar[:, None] * (self.points * self.points).sum(1)[None, :]
        return -np.maximum(sq, 0.0) / (2 * (1 - abar))[:, None]

    def log_density(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        var = 1 - abar
        return logsumexp(self._logits(x, abar), axis=1) - math.log(len(self.points)) - 0.5 * self.d * (LOG2PI + np.log(var))

    def score(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        logits = self._logits(x, abar)
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        return -(x - np.sqrt(abar)[:, None] * (w @ self.points)) / (1 - abar)[:, None]


@dataclass(frozen=True)
class GaussianSubspaceTarget:
    """Tier 1's target N(0, U U^T) (U: d x k orthonormal), with the same interface, for checking the estimator."""

    basis: np.ndarray

    @property
    def d(self) -> int:
        return self.basis.shape[0]

    def sample(self, abar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((len(abar), self.basis.shape[1]))
        noise = rng.standard_normal((len(abar), self.d))
        return np.sqrt(abar)[:, None] * (z @ self.basis.T) + np.sqrt(1 - abar)[:, None] * noise

    def log_density(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        var_null = 1 - abar  # signal coordinates have variance abar + (1 - abar) = 1
        proj = x @ self.basis
        sig = (proj * proj).sum(1)
        null = (x * x).sum(1) - sig
        k = self.basis.shape[1]
        return -0.5 * (sig + null / var_null + self.d * LOG2PI + (self.d - k) * np.log(var_null))

    def score(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        proj = (x @ self.basis) @ self.basis.T
        return -(proj + (x - proj) / (1 - abar)[:, None])


def fourier_manifold(n: int, d: int, k: int, frequency: float, rng: np.random.Generator) -> np.ndarray:
    """n points Phi(u), u ~ U[0,1]^k, Phi(u) = sqrt(2/d) cos(W u + b) with W ~ N(0, frequency^2): a curved
    k-dimensional manifold spanning all of R^d, with ||Phi(u)|| close to 1."""
    u = rng.random((n, k))
    w = rng.normal(0.0, frequency, size=(k, d))
    b = rng.uniform(0, 2 * np.pi, size=d)
    return math.sqrt(2.0 / d) * np.cos(u @ w + b)


def random_basis(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return q


def score_error_directions(T: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """One fixed unit vector per step: the score estimate s_t = s*_t + eps xi_t has E||s_t - s*_t||^2 = eps^2."""
    xi = rng.standard_normal((T, d))
    return xi / np.linalg.norm(xi, axis=1, keepdims=True)


@dataclass(frozen=True)
class PathKL:
    design: str
    score_eps: float
    mean: float
    stderr: float

    @property
    def ci95(self) -> tuple[float, float]:
        return self.mean - 1.96 * self.stderr, self.mean + 1.96 * self.stderr


def path_kl_mc(target: Target, schedule: Schedule, designs: list[str], samples: int, rng: np.random.Generator,
               score_eps: tuple[float, ...] = (0.0,), steps: int | None = None, chunk_rows: int = 8192,
               desc: str = "path KL") -> list[PathKL]:
    """Monte Carlo path KL for each design and score-error level, sharing every forward sample and score.

    `samples` draws of (X_{t-1}, X_t) per step; with `steps`, a stratified random subset of that many steps is
    used and reweighted (unbiased), for large T. Returns mean and standard error over the `samples` independent
    trajectories' summed terms (each step's draws are independent, so variances add).
    """
    T, d = schedule.T, target.d
    alpha, abar = schedule.alpha, schedule.abar
    coefs = {des: coefficients(schedule, des) for des in designs}
    xi = score_error_directions(T, d, rng) if any(e > 0 for e in score_eps) else None
    ts = np.arange(2, T + 1)
    weight = 1.0
    if steps is not None and steps < len(ts):
        strata = np.array_split(ts, steps)
        ts = np.array([rng.choice(s) for s in strata])
        weight_per = np.array([len(s) for s in strata], dtype=float)
    else:
        weight_per = np.ones(len(ts))
    keys = [(des, e) for des in designs for e in score_eps]
    totals = {key: np.zeros(samples) for key in keys}

    # prior term: KL(p_XT || N(0, I)), the same for every design
    xT = target.sample(np.full(samples, abar[-1]), rng)
    prior = target.log_density(xT, np.full(samples, abar[-1])) + 0.5 * ((xT * xT).sum(1) + d * LOG2PI)
    for key in keys:
        totals[key] += prior

    per_chunk = max(1, chunk_rows // samples)
    for start in progress(range(0, len(ts), per_chunk), desc=desc, total=math.ceil(len(ts) / per_chunk)):
        t = ts[start:start + per_chunk]
        wt = np.repeat(weight_per[start:start + per_chunk], samples) * weight
        i_t, i_prev = np.repeat(t - 1, samples), np.repeat(t - 2, samples)  # array index of step t is t - 1
        a_t, ab_t, ab_prev = alpha[i_t], abar[i_t], abar[i_prev]
        x_prev = target.sample(ab_prev, rng)
        x_t = np.sqrt(a_t)[:, None] * x_prev + np.sqrt(1 - a_t)[:, None] * rng.standard_normal(x_prev.shape)
        b_t = 1 - a_t
        log_fwd = -0.5 * (((x_t - np.sqrt(a_t)[:, None] * x_prev) ** 2).sum(1) / b_t + d * (LOG2PI + np.log(b_t)))
        log_p = log_fwd + target.log_density(x_prev, ab_prev) - target.log_density(x_t, ab_t)
        score = target.score(x_t, ab_t)
        for des in designs:
            eta, sigma2 = coefs[des]
            var_q = sigma2[i_t] / a_t
            for e in score_eps:
                s = score if e == 0 else score + e * xi[i_t]
                mean_q = (x_t + eta[i_t][:, None] * s) / np.sqrt(a_t)[:, None]
                log_q = -0.5 * (((x_prev - mean_q) ** 2).sum(1) / var_q + d * (LOG2PI + np.log(var_q)))
                totals[(des, e)] += np.bincount(np.tile(np.arange(samples), len(t)), weights=wt * (log_p - log_q),
                                                minlength=samples)
    return [PathKL(des, e, float(v.mean()), float(v.std(ddof=1) / math.sqrt(samples))) for (des, e), v in totals.items()]


def run_sampler(target: Target, schedule: Schedule, design: str, n: int, rng: np.random.Generator,
                score_eps: float = 0.0) -> np.ndarray:
    """The DDPM-type sampler from Y_T ~ N(0, I) down to Y_1 with the target's exact score (plus optional error)."""
    eta, sigma2 = coefficients(schedule, design)
    alpha, abar = schedule.alpha, schedule.abar
    xi = score_error_directions(schedule.T, target.d, rng) if score_eps > 0 else None
    y = rng.standard_normal((n, target.d))
    for i in range(schedule.T - 1, 0, -1):  # i = t - 1, t = T .. 2
        s = target.score(y, np.full(n, abar[i]))
        if xi is not None:
            s = s + score_eps * xi[i]
        y = (y + eta[i] * s + math.sqrt(sigma2[i]) * rng.standard_normal(y.shape)) / math.sqrt(alpha[i])
    return y
