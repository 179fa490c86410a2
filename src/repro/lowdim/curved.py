"""Tier 2: data on a curved k-dimensional set in R^d, the exact score of its noised law, and two Monte Carlo
measures of the sampler's error: the KL divergence between forward and sampler path measures (an upper bound on the
paper's KL at t = 1, by the chain rule) and, in `marginal`, an estimate of that KL itself.

The target (`TangentMixtureTarget`) is a union of N flat k-dimensional Gaussian discs tangent to a random
Fourier-feature manifold at N anchors, overlapping along it: k-dimensional at every scale (a cloud of N points would
look like point masses at the small noise levels of the last steps, where the proposed sigma* is exact in every
direction) and curved at the larger scales (the discs turn with the manifold, and no direction of R^d is null for
all of them, unlike Tier 1's linear subspace). p_{X_t} is a Gaussian mixture with rank-k-plus-identity
covariances, so its density and score are exact, no training.

The path KL is

    KL(p_XT || N(0, I)) + sum_{t=2}^T E[ log p(X_{t-1} | X_t) - log q(X_{t-1} | X_t) ],

with log p(x_{t-1} | x_t) = log p(x_t | x_{t-1}) + log p_{t-1}(x_{t-1}) - log p_t(x_t) (all exact here) and q the
sampler's Gaussian transition. The same estimator runs on the Tier 1 Gaussian target, where the closed form
(`exact.path_kl_per_coordinate`) checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
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
class TangentMixtureTarget:
    """A k-dimensional target at every scale: N Gaussian discs N(mu_i, tau^2 U_i U_i^T), each flat along the k-plane
    spanned by U_i (d x k, orthonormal). With mu_i = Phi(u_i) on a curved manifold and U_i its tangent space there,
    the discs overlap along the manifold and turn with it; no direction of R^d is null for all of them.

    p_{X_t} = (1/N) sum_i N(sqrt(abar) mu_i, C_i), C_i = abar tau^2 U_i U_i^T + (1 - abar) I: density and score are
    exact (Woodbury on the rank-k part), no training. Every method takes one abar per row of x.
    """

    means: np.ndarray   # N x d
    bases: np.ndarray   # N x d x k
    tau: float

    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def k(self) -> int:
        return self.bases.shape[2]

    @cached_property
    def _stacked(self) -> np.ndarray:  # d x (N k): every disc's basis side by side, for one matrix product
        n, d, k = self.bases.shape
        return np.ascontiguousarray(self.bases.transpose(1, 0, 2).reshape(d, n * k))

    @cached_property
    def _mean_coords(self) -> np.ndarray:  # N x k: U_i^T mu_i
        return np.einsum("ndk,nd->nk", self.bases, self.means)

    def sample(self, abar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(abar)
        idx = rng.integers(0, len(self.means), size=n)
        z = rng.standard_normal((n, self.k))
        x0 = self.means[idx] + self.tau * np.einsum("ndk,nk->nd", self.bases[idx], z)
        return np.sqrt(abar)[:, None] * x0 + np.sqrt(1 - abar)[:, None] * rng.standard_normal((n, self.d))

    def _parts(self, x: np.ndarray, abar: np.ndarray):
        """Per row and disc: the log-density of each component, the residual's tangent coordinates, and c."""
        n, (N, d, k) = len(x), self.bases.shape
        var = 1 - abar
        ra = np.sqrt(abar)
        # tangent coordinates U_i^T (x - sqrt(abar) mu_i), n x N x k
        proj = (x @ self._stacked).reshape(n, N, k) - ra[:, None, None] * self._mean_coords[None]
        sq = (x * x).sum(1)[:, None] - 2 * ra[:, None] * (x @ self.means.T) \
            + abar[:, None] * (self.means * self.means).sum(1)[None, :]
        sig = abar * self.tau ** 2 + var  # variance along the disc
        c = abar * self.tau ** 2 / sig    # C^{-1} = (I - c U U^T) / var
        quad = (np.maximum(sq, 0.0) - c[:, None] * (proj * proj).sum(2)) / var[:, None]
        logdet = (d - k) * np.log(var) + k * np.log(sig)
        logits = -0.5 * (quad + (logdet + d * LOG2PI)[:, None])
        return logits, proj, c

    def log_density(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        logits, _, _ = self._parts(x, abar)
        return logsumexp(logits, axis=1) - math.log(len(self.means))

    def log_density_and_score(self, x: np.ndarray, abar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both at once (one pass over the components), for the path KL."""
        logits, proj, c = self._parts(x, abar)
        top = logits.max(1, keepdims=True)
        w = np.exp(logits - top)
        total = w.sum(1, keepdims=True)
        w /= total
        n = len(x)
        mean = np.sqrt(abar)[:, None] * (w @ self.means)
        along = ((w[:, :, None] * proj).reshape(n, -1) @ self._stacked.T) * c[:, None]
        log_density = (top + np.log(total))[:, 0] - math.log(len(self.means))
        return log_density, -(x - mean - along) / (1 - abar)[:, None]

    def score(self, x: np.ndarray, abar: np.ndarray) -> np.ndarray:
        return self.log_density_and_score(x, abar)[1]

    def chart(self, x: np.ndarray, abar: float) -> tuple[np.ndarray, np.ndarray]:
        """(tangent, normal) squared norms of x's residual from its most likely disc at noise level abar, each
        divided by that disc's variance in those directions: chi^2_k and chi^2_{d-k} under p_{X_t} when the discs
        do not overlap, and exactly so for one disc (the Gaussian-subspace tier)."""
        ab = np.full(len(x), abar)
        logits, proj, _ = self._parts(x, ab)
        best = logits.argmax(1)
        rows = np.arange(len(x))
        resid = x - math.sqrt(abar) * self.means[best]
        tan = (proj[rows, best] ** 2).sum(1)
        nor = np.maximum((resid * resid).sum(1) - tan, 0.0)
        return tan / (abar * self.tau ** 2 + 1 - abar), nor / (1 - abar)


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

    def chart(self, x: np.ndarray, abar: float) -> tuple[np.ndarray, np.ndarray]:
        """(signal, null) squared norms over their variances: chi^2_k and chi^2_{d-k} under p_{X_t}."""
        sig = ((x @ self.basis) ** 2).sum(1)
        return sig, np.maximum((x * x).sum(1) - sig, 0.0) / (1 - abar)


@dataclass(frozen=True)
class FourierManifold:
    """Phi(u) = sqrt(2/d) cos(W^T u + b), u in [0,1]^k, W ~ N(0, frequency^2): a random Fourier-feature embedding, a
    curved k-dimensional manifold spanning all of R^d with ||Phi(u)|| close to 1. Its geometry does not drift with d:
    <Phi(u), Phi(u')> tends to exp(-frequency^2 ||u - u'||^2 / 2) as d grows (random Fourier features)."""

    w: np.ndarray  # k x d
    b: np.ndarray  # d

    @classmethod
    def draw(cls, d: int, k: int, frequency: float, rng: np.random.Generator) -> "FourierManifold":
        return cls(rng.normal(0.0, frequency, size=(k, d)), rng.uniform(0, 2 * np.pi, size=d))

    def embed(self, u: np.ndarray) -> np.ndarray:
        return math.sqrt(2.0 / self.w.shape[1]) * np.cos(u @ self.w + self.b)

    def tangent(self, u: np.ndarray) -> np.ndarray:
        """Orthonormal bases (n x d x k) of the tangent spaces at Phi(u): the Jacobian's columns, orthonormalised."""
        jac = -math.sqrt(2.0 / self.w.shape[1]) * np.sin(u @ self.w + self.b)[:, :, None] * self.w.T[None]
        q, _ = np.linalg.qr(jac)
        return q


def tangent_mixture(anchors: int, d: int, k: int, frequency: float, tangent_scale: float,
                    rng: np.random.Generator) -> TangentMixtureTarget:
    """Discs tangent to a fresh Fourier manifold at `anchors` points u_i ~ U[0,1]^k, with standard deviation tau =
    tangent_scale x the median distance from an anchor to its nearest neighbour, so that neighbouring discs overlap
    along the manifold (tangent_scale >= 0.5) instead of leaving point-like clumps."""
    m = FourierManifold.draw(d, k, frequency, rng)
    u = rng.random((anchors, k))
    means = m.embed(u)
    sq = (means * means).sum(1)
    dist2 = sq[:, None] + sq[None, :] - 2 * means @ means.T
    np.fill_diagonal(dist2, np.inf)
    tau = tangent_scale * float(np.median(np.sqrt(np.maximum(dist2.min(1), 0.0))))
    return TangentMixtureTarget(means, m.tangent(u), tau)


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
        if hasattr(target, "log_density_and_score"):
            log_t, score = target.log_density_and_score(x_t, ab_t)
        else:
            log_t, score = target.log_density(x_t, ab_t), target.score(x_t, ab_t)
        log_p = log_fwd + target.log_density(x_prev, ab_prev) - log_t
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
                score_eps: float = 0.0, desc: str | None = None) -> np.ndarray:
    """The DDPM-type sampler from Y_T ~ N(0, I) down to Y_1 with the target's exact score (plus optional error)."""
    eta, sigma2 = coefficients(schedule, design)
    alpha, abar = schedule.alpha, schedule.abar
    xi = score_error_directions(schedule.T, target.d, rng) if score_eps > 0 else None
    y = rng.standard_normal((n, target.d))
    steps = range(schedule.T - 1, 0, -1)  # i = t - 1, t = T .. 2
    for i in (progress(steps, desc=desc) if desc else steps):
        s = target.score(y, np.full(n, abar[i]))
        if xi is not None:
            s = s + score_eps * xi[i]
        y = (y + eta[i] * s + math.sqrt(sigma2[i]) * rng.standard_normal(y.shape)) / math.sqrt(alpha[i])
    return y
