"""From the error grids to the paper's statements: dependence on d and rate in T."""

from __future__ import annotations

import numpy as np
import pandas as pd


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x (NaN when any y is not positive)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.any(y <= 0):
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def dim_dependence(grid: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (design, T): err(d_max)/err(d_min) and the log-log slope between the two largest d (only where the error
    is known at two or more d: the marginal KL is estimated on a sub-grid)."""
    rows = []
    for (design, T), g in grid.groupby(["design", "T"], sort=False):
        g = g.dropna(subset=[value]).sort_values("d")
        if g["d"].nunique() < 2:
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        rows.append({"design": design, "T": int(T), "ratio": hi[value] / lo[value],
                     "slope": loglog_slope(g["d"].iloc[-2:], g[value].iloc[-2:])})
    return pd.DataFrame(rows)


def rate_in_T(grid: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per design, at the largest d: the log-log slope of the error against T over the whole T grid."""
    d_max = grid["d"].max()
    rows = []
    for design, g in grid[grid["d"] == d_max].groupby("design", sort=False):
        g = g.sort_values("T")
        rows.append({"design": design, "d": int(d_max), "slope": loglog_slope(g["T"], g[value])})
    return pd.DataFrame(rows)
