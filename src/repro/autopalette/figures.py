"""AutoPalette figures, drawn from result files only.

* `palettes`: one stored (hard-quantised) distilled image per class with its palette underneath (cf. the paper's
  visualisations of distilled images and palettes).
* `accuracy_vs_colours`: distilled accuracy against the number of colours (our Table 7 runs, mean +- std over
  evaluation nets), beside the paper's Table 7 values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from repro.common.config import load_claims
from repro.common.figures import new_figure, save_figure
from repro.common.io import load_npz

COLOURS_TABLE = "table7"


def colours_of(column: str) -> int:
    """'256 (full)' -> 256, '64' -> 64."""
    return int(str(column).split()[0])


def draw_palettes(set_path: str, class_names: tuple[str, ...], out_stem: str, scale: str) -> None:
    data = load_npz(set_path)
    images, labels = data["images"], data["labels"]
    palettes = data.get("palette")
    index = data.get("index")
    classes = sorted(set(labels.tolist()))
    fig, axes = new_figure(ncols=len(classes), nrows=2, width=1.0, height=1.05)
    for col, c in enumerate(classes):
        i = int(np.flatnonzero(labels == c)[0])
        ax = axes[0, col]
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(class_names[c] if c < len(class_names) else str(c), fontsize=6)
        ax = axes[1, col]
        if palettes is not None and index is not None:
            # Palettes are stored in network space (ZCA-whitened when ZCA is on, where an entry has no pixel
            # colour of its own); show each used bucket as the mean 8-bit colour of its pixels in the rendering.
            used = np.unique(index[i])
            pal = np.stack([images[i][index[i] == k].mean(0) for k in used]).round().astype(np.uint8)
            side = math.ceil(math.sqrt(len(pal)))
            grid = np.ones((side * side, 3), np.uint8) * 255
            grid[:len(pal)] = pal
            ax.imshow(grid.reshape(side, side, 3), interpolation="nearest")
            ax.set_xlabel(f"{len(pal)} colours", fontsize=6)
        for a in axes[:, col]:
            a.set_xticks([])
            a.set_yticks([])
            a.grid(False)
    fig.suptitle(f"AutoPalette distilled images (top) and their palettes (bottom), {scale} scale", fontsize=7)
    save_figure(fig, out_stem)


def draw_accuracy_vs_colours(parts: list[str], out_stem: str, scale: str) -> None:
    frames = [pd.read_csv(p, dtype={"row": str, "column": str}) for p in parts]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["table"] == COLOURS_TABLE]
    fig, axes = new_figure(width=3.6, height=2.6)
    ax = axes[0, 0]
    if not df.empty:
        df = df.assign(k=df["column"].map(colours_of))
        g = df.groupby("k")
        ours = g["value"].mean()
        spread = g["std"].mean() if g.size().max() == 1 else g["value"].std(ddof=1)
        ax.errorbar(ours.index, ours.values, yerr=spread.reindex(ours.index).values, marker="o", capsize=2,
                    label=f"ours ({scale} scale)")
    reg = load_claims("autopalette")
    paper = sorted((colours_of(c["column"]), c["reported"]) for c in reg["claims"]
                   if c.get("table") == COLOURS_TABLE and c.get("reported") is not None and "measure" not in c)
    if paper:
        ax.plot([k for k, _ in paper], [v for _, v in paper], "s--", color="0.5", label="paper (Table 7, IPC 10)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of colours K")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    save_figure(fig, out_stem)
