"""Mean ± standard deviation over seeds or evaluation runs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


def mean_std(values: Iterable[float], *, ddof: int = 0) -> MeanStd:
    """Mean and standard deviation of finite values.

    `ddof=0` (population std) is the default because the dataset-distillation papers report `np.std` over their
    evaluation networks (MTT / DATM / AutoPalette code, autopalette sheet); pass `ddof=1` for the sample std.
    With a single value the std is 0 for ddof=0 and NaN for ddof=1. NaN values are an error, not skipped silently.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    if not np.isfinite(v).all():
        raise ValueError(f"mean_std got non-finite values {v[~np.isfinite(v)].tolist()}; fix or drop the failed runs")
    std = float(np.std(v, ddof=ddof)) if v.size > ddof else math.nan
    return MeanStd(mean=float(v.mean()), std=std, n=int(v.size))
