"""Tina's figures redrawn from our runs (they read only result files).

* `acc_distribution`: per-task accuracy of generated models against the fine-tuned p-models (and the other methods),
  on ID and OOD tasks: the distribution figure the issue asks for, plus a per-task scatter of generated vs
  fine-tuned accuracy.
* `scaling`: accuracy of generated models against the number of training tasks (p-models) the generator saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.common.figures import new_figure, save_figure
from repro.common.io import load_npz
from repro.common.results import read_metrics

ORDER = [("finetuned", "Fine-tuned"), ("direct", "Direct FT"), ("tina", "Tina"), ("shuffled", "Shuffled"),
         ("retrieval", "Retrieval"), ("generic", "Generic"), ("uncond", "Uncond.")]
SPLITS = [("id_test", "ID tasks"), ("ood_test", "OOD tasks")]


def _pooled(paths: list[str]) -> dict[str, np.ndarray]:
    """Per-task accuracies, concatenated over seeds."""
    data = [load_npz(p) for p in paths]
    return {k: np.concatenate([d[k] for d in data]) * 100 for k in data[0]}


def accuracy_distribution(per_task: list[str], metrics: list[str], stem: str) -> None:
    acc = _pooled(per_task)
    fig, axes = new_figure(ncols=3, width=3.0, height=2.6)
    for ax, (split, title) in zip(axes[0][:2], SPLITS):
        present = [(k, name) for k, name in ORDER if f"{k}_{split}" in acc]
        values = [acc[f"{k}_{split}"] for k, _ in present]
        parts = ax.violinplot(values, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.5)
        ax.axhline(float(np.mean(acc[f"chance_{split}"])), color="grey", ls=":", lw=1, label="chance (mean)")
        ax.set_xticks(range(1, len(present) + 1), [name for _, name in present], rotation=40, ha="right")
        ax.set_ylabel("task accuracy (%)")
        ax.set_title(title)
        ax.legend(loc="lower left")
    ax = axes[0][2]
    for split, title in SPLITS:
        ax.scatter(acc[f"finetuned_{split}"], acc[f"tina_{split}"], s=10, alpha=0.7, label=title)
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.set_xlabel("fine-tuned p-model accuracy (%)")
    ax.set_ylabel("generated accuracy (%)")
    ax.set_title("per task")
    ax.legend(loc="upper left")
    save_figure(fig, stem)


def scaling_curve(per_task: list[str], metrics: list[str], stem: str) -> None:
    df = pd.concat([read_metrics(p) for p in metrics])
    sc = df[df["table"] == "scaling"].copy()
    main = df[df["table"] == "main"]
    n_all = int(df[(df["table"] == "zoo") & (df["row"] == "p-models (training tasks)")]["n"].iloc[0])
    sc["tasks"] = [n_all if r == "all tasks" else int(r.split()[0]) for r in sc["row"]]
    fig, axes = new_figure(ncols=1, width=3.6, height=2.6)
    ax = axes[0][0]
    for col, marker in (("ID", "o"), ("OOD", "s")):
        g = sc[sc["column"] == col].groupby("tasks")["value"].agg(["mean", "std"]).reset_index()
        line = ax.errorbar(g["tasks"], g["mean"], yerr=g["std"].fillna(0), marker=marker, label=f"Tina, {col}")
        for method, ls in (("Fine-tuned p-model", "--"), ("Generic (task classes)", ":")):
            ref = main[(main["row"] == method) & (main["column"] == col)]["value"].mean()
            ax.axhline(ref, color=line[0].get_color(), ls=ls, lw=1,
                       label=f"{method.split(' ')[0]}, {col}")
    ax.set_xscale("log")
    ticks = sorted(sc["tasks"].unique())
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training tasks (p-models)")
    ax.set_ylabel("mean task accuracy (%)")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, stem)


FIGURES = {"acc_distribution": accuracy_distribution, "scaling": scaling_curve}
