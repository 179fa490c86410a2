"""Noise schedules and the sampler's coefficient designs.

Notation follows the paper sheet (`shared/papers/lowdim.md` §3, UNVERIFIED against the PDF): forward
X_t = sqrt(alpha_t) X_{t-1} + sqrt(1 - alpha_t) W_t, beta_t = 1 - alpha_t, abar_t = prod_{i<=t} alpha_i, and the
sampler Y_{t-1} = (Y_t + eta_t s_t(Y_t) + sigma_t Z_t) / sqrt(alpha_t) run for t = T, ..., 2 so that Y_1 is compared
with X_1 (the paper compares at t = 1, early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DESIGNS = ("proposed", "perturbed", "competing", "ddpm_large")
"""proposed: sigma_t^2 = (1-alpha_t)(alpha_t-abar_t)/(1-abar_t) (Li & Yan); perturbed: PERTURBATION * the proposed
sigma_t^2, the negative control (a design 2% off the unique one: its error must grow with d, sheet §3 Thm 2);
competing: sigma_t^2 = 1-alpha_t (earlier DDPM theory); ddpm_large: sigma_t^2 = alpha_t beta_t, i.e. DDPM's
"fixedlarge" variance beta_t after the 1/sqrt(alpha_t) scaling of this parameterisation (sheet §4). All use
eta_t = 1 - alpha_t."""

PERTURBATION = 1.02

SCHEDULES = ("li_yan", "ddpm_linear")


@dataclass(frozen=True)
class Schedule:
    """beta_t for t = 1..T (index 0 is t = 1) and the derived products."""

    name: str
    beta: np.ndarray

    @property
    def T(self) -> int:
        return len(self.beta)

    @property
    def alpha(self) -> np.ndarray:
        return 1.0 - self.beta

    @property
    def abar(self) -> np.ndarray:
        return np.cumprod(self.alpha)


def li_yan_schedule(T: int, c0: float = 2.0, c1: float = 4.0) -> Schedule:
    """beta_1 = T^-c0, beta_{t+1} = (c1 log T / T) min{beta_1 (1 + c1 log T / T)^t, 1} (sheet §3, from Li, Wei,
    Chen & Chi). c0 = 2, c1 = 4 are the sheet's suggested free choice, not the paper's."""
    rate = c1 * np.log(T) / T
    beta1 = float(T) ** (-c0)
    t = np.arange(1, T)
    rest = rate * np.minimum(beta1 * (1.0 + rate) ** t, 1.0)
    return Schedule("li_yan", np.concatenate([[beta1], rest]))


def ddpm_linear_schedule(T: int) -> Schedule:
    """DDPM's linear schedule 1e-4 .. 0.02 over 1000 steps, rescaled by 1000/T to keep its total noise (sheet §6)."""
    scale = 1000.0 / T
    return Schedule("ddpm_linear", np.clip(scale * np.linspace(1e-4, 0.02, T), 0.0, 0.999))


def make_schedule(name: str, T: int, c0: float = 2.0, c1: float = 4.0) -> Schedule:
    if name == "li_yan":
        return li_yan_schedule(T, c0, c1)
    if name == "ddpm_linear":
        return ddpm_linear_schedule(T)
    raise ValueError(f"unknown schedule '{name}' (known: {', '.join(SCHEDULES)})")


def coefficients(schedule: Schedule, design: str) -> tuple[np.ndarray, np.ndarray]:
    """(eta_t, sigma_t^2) for t = 1..T (index 0 is t = 1, never used by the sampler)."""
    alpha, abar, beta = schedule.alpha, schedule.abar, schedule.beta
    eta = beta.copy()
    if design in ("proposed", "perturbed"):
        sigma2 = beta * (alpha - abar) / (1.0 - abar)
        if design == "perturbed":
            sigma2 = PERTURBATION * sigma2
    elif design == "competing":
        sigma2 = beta.copy()
    elif design == "ddpm_large":
        sigma2 = alpha * beta
    else:
        raise ValueError(f"unknown coefficient design '{design}' (known: {', '.join(DESIGNS)})")
    return eta, sigma2
