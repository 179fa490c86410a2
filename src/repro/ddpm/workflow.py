"""Paths the ddpm rules compute at DAG-build time (kept out of the rule file so it stays declarative)."""

from __future__ import annotations

from repro.ddpm.config import VARIANTS, DDPMConfig

RELEASED = "released"


def model_path(variant: str, seed: int | str, root: str, released_path: str) -> str:
    """Weights a sampling or bound job loads: the run that trains `variant`, or the downloaded release."""
    if variant == RELEASED:
        return released_path
    return f"{root}/runs/{VARIANTS[variant].trained_by}_s{seed}/model.pt"


def figure_inputs(name: str, cfg: DDPMConfig, root: str, seed: int) -> list[str]:
    """The arrays a figure is drawn from (first seed)."""
    if name in ("samples", "progressive_generation"):
        return [f"{root}/samples/eps_simple_s{seed}.npz"]
    if name == "table2_samples":
        return [f"{root}/samples/{v}_s{seed}.npz" for v in cfg.eval_variants]
    return [f"{root}/bound/{v}_s{seed}.npz" for v in ["eps_simple"] + ([RELEASED] if cfg.released else [])]


def figure_labels(name: str, cfg: DDPMConfig) -> list[str]:
    """Shell-quoted row labels for the Table 2 sample figure."""
    return [f"'{VARIANTS[v].row}'" for v in cfg.eval_variants] if name == "table2_samples" else []


def selects_by_fid(cfg: DDPMConfig, variant: str) -> bool:
    """Whether the training run of `variant` picks its evaluated checkpoint by an in-training FID."""
    return cfg.train_for(variant).select == "best_fid"


def train_inputs(cfg: DDPMConfig, variant: str, data: str, inception: str, train_stats: str) -> dict[str, str]:
    """Inputs of a training job: the train split, and the FID inputs where the checkpoint is selected by FID."""
    if selects_by_fid(cfg, variant):
        return {"data": data, "inception": inception, "train_stats": train_stats}
    return {"data": data}


def train_select_args(cfg: DDPMConfig, variant: str, inputs, extractor: str) -> str:
    """The train command's FID arguments (empty unless the checkpoint is selected by FID)."""
    if not selects_by_fid(cfg, variant):
        return ""
    return f"--inception {inputs.inception} --extractor {extractor} --train-stats {inputs.train_stats}"
