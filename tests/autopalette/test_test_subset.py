"""`data.test_per_class`: evaluation tests on a class-balanced subset of the test split (smoke), or on all of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.data import balanced_subset
from repro.autopalette.pipeline import DATA_SEED, execute_run
from repro.common.data.canonical import load_split, save_split
from repro.common.results import read_metrics
from tests.autopalette.test_runs_new_methods import _split


def _cfg(test_per_class: int | None) -> AutoPaletteConfig:
    return AutoPaletteConfig.from_dict({
        "net": {"width": 8, "depth": 3},
        "data": {"datasets": ["cifar10"], "zca": False, "test_per_class": test_per_class},
        "experts": {"num_experts": 1, "epochs": 2},
        "selection": {},
        "palette": {},
        "distill": {"max_start_epoch": 1, "expert_epochs": 1},
        "evaluation": {"num_nets": 2, "epochs": 3, "batch_size": 64},
        "runs": {"random_c10_ipc1": {"dataset": "cifar10", "method": "real", "ipc": 2,
                                     "outputs": [{"table": "table1", "row": "Random", "column": "C10 IPC1"}]}},
    })


def _evaluate(tmp_path, test_file, test_per_class):
    cfg = _cfg(test_per_class)
    out = tmp_path / f"run_{test_file.stem}_{test_per_class}"
    execute_run(cfg, cfg.runs["random_c10_ipc1"], 0, "smoke", tmp_path / "train.npz", test_file, [], None,
                out.with_suffix(".npz"), out.with_suffix(".csv"), torch.device("cpu"))
    extra = json.loads(out.with_suffix(".provenance.json").read_text())
    return extra["accuracies"], extra["test_images"], read_metrics(out.with_suffix(".csv"))


def test_a_run_tests_on_the_balanced_subset_it_names(tmp_path):
    torch.set_num_threads(1)
    _split(tmp_path / "train.npz", 6, 0)
    _split(tmp_path / "test.npz", 5, 1)
    full = load_split(tmp_path / "test.npz")
    keep = balanced_subset(full.labels, 2, DATA_SEED)
    assert np.bincount(full.labels[keep]).tolist() == [2] * 10
    save_split(tmp_path / "test_sub.npz", full.take(keep))

    acc_sub, n_sub, metrics = _evaluate(tmp_path, tmp_path / "test.npz", 2)
    acc_file, n_file, _ = _evaluate(tmp_path, tmp_path / "test_sub.npz", None)
    acc_all, n_all, _ = _evaluate(tmp_path, tmp_path / "test.npz", None)
    assert (n_sub, n_file, n_all) == (20, 20, 50)
    # the same nets (same seeds, same training set) tested on exactly the subset's images
    assert acc_sub == acc_file
    assert all(round(a / 5.0, 9).is_integer() for a in acc_sub)       # accuracies over 20 images: multiples of 5 %
    assert metrics.value.iloc[0] == pytest.approx(np.mean(acc_sub))


def test_smoke_tests_on_a_subset_and_the_paper_on_the_whole_split():
    from repro.common.config import load_paper_config

    assert AutoPaletteConfig.from_dict(load_paper_config("autopalette", "smoke")).data.test_per_class == 200
    assert AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper")).data.test_per_class is None
