"""Figures: one style, saved as PDF (for papers) and PNG (for the HTML report) in one step."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from repro.common.io import atomic_path  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6, **kwargs):
    """A figure of `nrows` x `ncols` panels, each `width` x `height` inches, in the suite's style."""
    plt.rcParams.update(STYLE)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)


def save_figure(fig, stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write `<stem>.pdf` and `<stem>.png` atomically; close the figure."""
    stem = Path(stem)
    if stem.suffix in (".pdf", ".png"):
        stem = stem.with_suffix("")
    fig.tight_layout()
    paths = []
    for ext in (".pdf", ".png"):
        out = stem.with_suffix(ext)
        with atomic_path(out, suffix=ext) as tmp:
            fig.savefig(tmp, format=ext[1:], metadata={"CreationDate": None} if ext == ".pdf" else None)
        paths.append(out)
    plt.close(fig)
    return paths[0], paths[1]
