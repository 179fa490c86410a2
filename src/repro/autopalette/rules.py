"""Input functions of the autopalette rules (workflow/rules/autopalette.smk), kept here so the rule file holds
rules only. `prepared(dataset, split)` is the data rules' path function."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def plannable(name: str, run: dict, subset_source: Callable[[str], str], prepared: Callable[[str, str], str]
              ) -> bool:
    """Whether a run can be planned here. The ImageNet subsets other than ImageNette/ImageWoof (which are downloaded)
    need an ImageNet-1k folder, which has no public download: their runs are planned only where that folder (in the
    mirror) or the prepared split exists; elsewhere the DAG says so on stderr and leaves the run out (its Table 2
    cell stays not_run)."""
    from repro.common.data.imagenet_subsets import FASTAI_ENTRY, SUBSETS

    ds = run["dataset"]
    if ds not in SUBSETS or ds in FASTAI_ENTRY:
        return True
    source = subset_source(ds)
    if Path(source).exists() or Path(prepared(ds, "train")).exists():
        return True
    print(f"autopalette: run {name} left out: {ds} needs an ImageNet-1k folder at {source} (train/<wnid>/, "
          f"val/<wnid>/; registry entry imagenet1k)", file=sys.stderr)
    return False


def expert_paths(ap_dir: str, dataset: str, num_experts: int) -> list[str]:
    return [f"{ap_dir}/experts/{dataset}/expert_{i}.pt" for i in range(num_experts)]


def selection_path(ap_dir: str, run: dict) -> str | None:
    """The graph-cut ranking a run's init needs: on K-colour Median-Cut images, or on 8-bit images (K = 256)."""
    init = run.get("init", "random_real")
    if init not in ("graphcut_real", "graphcut_quantized"):
        return None
    colors = run.get("n_colors", 256) if init == "graphcut_quantized" else 256
    return f"{ap_dir}/selection/{run['dataset']}_k{colors}.npz"


def run_inputs(run: dict, ap_dir: str, num_experts: int, prepared: Callable[[str, str], str]) -> dict[str, object]:
    inputs: dict[str, object] = {"train": prepared(run["dataset"], "train"), "test": prepared(run["dataset"], "test")}
    if run["method"] in ("mtt", "datm", "autopalette", "dm_autopalette"):
        inputs["experts"] = expert_paths(ap_dir, run["dataset"], num_experts)
    sel = selection_path(ap_dir, run)
    if sel:
        inputs["selection"] = sel
    return inputs


def parts_with_table(runs: dict[str, dict], seeds: list[int], table: str, part_path: Callable[[str], str]
                     ) -> list[str]:
    return [part_path(f"{name}-s{seed}") for name, run in runs.items() for seed in seeds
            if any(o["table"] == table for o in run["outputs"])]
