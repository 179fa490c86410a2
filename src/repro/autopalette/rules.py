"""Input functions of the autopalette rules (workflow/rules/autopalette.smk), kept here so the rule file holds
rules only. `prepared(dataset, split)` is the data rules' path function."""

from __future__ import annotations

from collections.abc import Callable


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
