"""The lowdim figures, drawn from the result grids only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.common.figures import new_figure, save_figure
from repro.lowdim.analysis import loglog_slope

STYLE = {"proposed": dict(color="tab:red", ls="-"), "perturbed": dict(color="tab:orange", ls="-."),
         "competing": dict(color="black", ls="--"), "ddpm_large": dict(color="tab:blue", ls=":")}
LABEL = {"proposed": r"proposed $\sigma_t^{\star2}$", "perturbed": r"control $1.02\,\sigma_t^{\star2}$",
         "competing": r"$\sigma_t^2 = 1-\alpha_t$", "ddpm_large": r"DDPM fixedlarge $\alpha_t\beta_t$"}


def _shade(i: int, n: int) -> float:
    return 0.35 + 0.65 * (i + 1) / n


def kl_tv_vs_d(exact: pd.DataFrame, schedule: str, stem: str) -> None:
    """The paper's p.9 figure redrawn: KL and TV between X_1 and Y_1 against d, one line per T and design."""
    g = exact[exact["schedule"] == schedule]
    fig, axes = new_figure(ncols=2, width=3.6, height=2.9)
    Ts = sorted(g["T"].unique())
    for ax, value, ylabel in ((axes[0, 0], "kl", r"KL$(p_{X_1}\,\|\,p_{Y_1})$"), (axes[0, 1], "tv", "TV")):
        for design, dg in g.groupby("design", sort=False):
            for i, T in enumerate(Ts):
                line = dg[dg["T"] == T].sort_values("d")
                ax.plot(line["d"], line[value], alpha=_shade(i, len(Ts)), lw=1.2, **STYLE[design],
                        label=f"{LABEL[design]}, T={T}" if i in (0, len(Ts) - 1) else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ambient dimension d")
        ax.set_ylabel(ylabel)
    k = int(g["k"].iloc[0])
    axes[0, 0].set_title(f"k = {k}, schedule {schedule} (exact, Gaussian on a subspace)")
    axes[0, 1].legend(loc="lower right", ncols=1, fontsize=6)
    save_figure(fig, stem)


def error_vs_T(exact: pd.DataFrame, stem: str) -> None:
    """TV and KL at the largest d against T (log-log), with fitted slopes and the theorem's 1/sqrt(T)."""
    fig, axes = new_figure(ncols=2, width=3.4, height=2.8)
    for ax, sched in zip(axes[0], sorted(exact["schedule"].unique(), reverse=True)):
        g = exact[(exact["schedule"] == sched) & (exact["d"] == exact["d"].max())]
        for design, dg in g.groupby("design", sort=False):
            dg = dg.sort_values("T")
            slope = loglog_slope(dg["T"], dg["tv"])
            ax.plot(dg["T"], dg["tv"], marker="o", ms=3, **STYLE[design], label=f"{LABEL[design]} (slope {slope:.2f})")
        T = np.array(sorted(g["T"].unique()), float)
        ref = g[g["design"] == "proposed"].sort_values("T")["tv"].to_numpy()
        if len(ref):
            ax.plot(T, ref[0] * np.sqrt(T[0] / T), color="grey", lw=0.8, label=r"$\propto 1/\sqrt{T}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of steps T")
        ax.set_ylabel(f"TV at d = {int(g['d'].max())}")
        ax.set_title(f"schedule {sched}")
        ax.legend(fontsize=6)
    save_figure(fig, stem)


def _unit_band(g: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean over units per d and its 95% t-interval half-width."""
    from scipy import stats

    agg = g.groupby("d")[value].agg(["mean", "std", "count"]).reset_index()
    agg["half"] = stats.t.ppf(0.975, np.maximum(agg["count"] - 1, 1)) * agg["std"] / np.sqrt(agg["count"])
    return agg


def curved_vs_d(curved: pd.DataFrame, stem: str) -> None:
    """Tier 2 at the largest T: the marginal KL at t = 1 (chart-statistic estimate, a lower bound) and the path KL
    (an upper bound) against d, mean over units with 95% intervals."""
    fig, axes = new_figure(ncols=2, width=3.4, height=2.8)
    T_max = curved["T"].max()
    g = curved[(curved["eps"] == 0) & (curved["T"] == T_max)]
    panels = ((axes[0, 0], "kl", r"KL$(p_{X_1}\,\|\,p_{Y_1})$, lower bound", "linear"),
              (axes[0, 1], "path_kl", "path KL, upper bound", "log"))
    for ax, value, ylabel, yscale in panels:
        for design, dg in g.dropna(subset=[value]).groupby("design", sort=False):
            band = _unit_band(dg, value)
            ax.errorbar(band["d"], band["mean"], yerr=band["half"], marker="o", ms=3, capsize=2, lw=1.1,
                        **STYLE[design], label=LABEL[design])
        ax.set_xscale("log")
        dims = sorted(g["d"].unique())
        ax.set_xticks(dims, [str(int(d)) for d in dims])
        ax.minorticks_off()
        ax.set_yscale(yscale)
        ax.set_xlabel("ambient dimension d")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6)
    n_units = int(g["unit"].nunique())
    axes[0, 0].set_title(f"curved k-manifold, T = {T_max}, {n_units} units", fontsize=8)
    axes[0, 1].set_title("same runs: KL of the path measures", fontsize=8)
    save_figure(fig, stem)


FIGURES = {
    "kl_tv_vs_d": lambda exact, curved, stem: kl_tv_vs_d(exact, "li_yan", stem),
    "kl_tv_vs_d_linear": lambda exact, curved, stem: kl_tv_vs_d(exact, "ddpm_linear", stem),
    "error_vs_T": lambda exact, curved, stem: error_vs_T(exact, stem),
    "curved_vs_d": lambda exact, curved, stem: curved_vs_d(curved, stem),
}
