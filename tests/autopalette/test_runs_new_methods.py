"""execute_run end to end on a tiny prepared split (CPU, seconds): a DM run, a DM + AutoPalette run (its soft-label
init read from an expert file) and the cross-architecture cells of Table 6 with their shifted-label controls land in
the metrics part with the cells the config names."""

from __future__ import annotations

import numpy as np
import torch

from repro.autopalette.config import AutoPaletteConfig
from repro.autopalette.experts import make_net
from repro.autopalette.pipeline import execute_run
from repro.common.data.canonical import Split, save_split
from repro.common.io import load_npz, save_torch
from repro.common.results import read_metrics


def _split(path, n_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    images[..., 0] = (labels * 25)[:, None, None]                      # a class signal in the red channel
    save_split(path, Split(images=images, labels=labels, class_names=tuple(f"c{i}" for i in range(10)),
                           name="cifar10", split=path.stem))


def _cfg() -> AutoPaletteConfig:
    out = lambda col: [{"table": "table5", "row": "CIFAR10 IPC1", "column": col}]   # noqa: E731
    return AutoPaletteConfig.from_dict({
        "net": {"width": 8, "depth": 3},
        "data": {"datasets": ["cifar10"], "zca": False},
        "experts": {"num_experts": 1, "epochs": 2},
        "selection": {},
        "palette": {"hidden": 8, "loss_images": 4, "gamma": 0.0},
        "distill": {"max_start_epoch": 1, "expert_epochs": 1},
        "evaluation": {"num_nets": 1, "epochs": 2, "batch_size": 64},
        "dm": {"iterations": 3, "batch_real": 8},
        "runs": {
            "dm_c10_ipc1": {"dataset": "cifar10", "method": "dm", "ipc": 1, "outputs": out("DM vanilla")},
            "dm_ap_c10_ipc1": {"dataset": "cifar10", "method": "dm_autopalette", "ipc": 1, "n_colors": 64,
                               "dm": {"class_mean": True, "siamese": False}, "outputs": out("DM + AutoPalette")},
            "real_c10_ipc1": {"dataset": "cifar10", "method": "real", "ipc": 1,
                              "outputs": [{"table": "table1", "row": "Random", "column": "C10 IPC1"}],
                              "cross_arch_outputs": [
                                  {"arch": "AlexNet", "table": "table6", "row": "Random", "column": "AlexNet IPC1"},
                                  {"arch": "AlexNet", "table": "table6", "row": "Random (labels shifted, control)",
                                   "column": "AlexNet IPC1", "shifted": True},
                                  {"arch": "ResNet18", "table": "table6", "row": "Random", "column": "ResNet18 IPC1"},
                                  {"arch": "ResNet18", "table": "table6", "row": "Random (labels shifted, control)",
                                   "column": "ResNet18 IPC1", "shifted": True}]},
        },
    })


def test_dm_dm_autopalette_and_cross_architecture_runs(tmp_path):
    torch.set_num_threads(1)
    _split(tmp_path / "train.npz", 8, 0)
    _split(tmp_path / "test.npz", 2, 1)
    cfg = _cfg()
    net = make_net(cfg.net, 10, (32, 32), "cpu")
    expert = tmp_path / "expert_0.pt"
    save_torch(expert, {"trajectory": torch.stack([torch.cat([p.detach().reshape(-1) for p in net.parameters()])
                                                   * s for s in (1.0, 1.0, 2.0)])})
    parts = {}
    for name in cfg.runs:
        experts = [str(expert)] if name == "dm_ap_c10_ipc1" else []
        execute_run(cfg, cfg.runs[name], 0, "smoke", tmp_path / "train.npz", tmp_path / "test.npz", experts, None,
                    tmp_path / f"{name}.npz", tmp_path / f"{name}.csv", torch.device("cpu"))
        parts[name] = read_metrics(tmp_path / f"{name}.csv")
    dm = parts["dm_c10_ipc1"]
    assert dm[(dm.table == "table5") & (dm.column == "DM vanilla")].value.between(0, 100).all()
    stored = load_npz(tmp_path / "dm_c10_ipc1.npz")
    assert len(stored["dm_loss"]) == 3 and float(stored["lr"]) == cfg.dm.lr_net and "label_logits" not in stored
    ap = load_npz(tmp_path / "dm_ap_c10_ipc1.npz")
    assert ap["images"].shape[0] == 40                                  # 4x images at 64 colours
    assert ap["index"].max() < 64 and ap["label_logits"].shape == (40, 10)
    assert float(ap["lr"]) == cfg.distill.lr_teacher                   # dm_quant.py: evaluation at the teacher lr
    # soft labels = the final expert snapshot's logits on the initial (real, pre-distillation) images
    from repro.autopalette.data import Preprocess
    from repro.common.data.canonical import load_split

    train = load_split(tmp_path / "train.npz")
    pre = Preprocess.for_dataset("cifar10", train.images, zca=False, zca_eps=0.1, device="cpu")
    final = torch.load(expert, weights_only=True)["trajectory"][-1]
    expected = net.forward_flat(final, pre.to_net(train.images[ap["init_indices"]], "cpu"))
    np.testing.assert_allclose(ap["label_logits"], expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    storage = parts["dm_ap_c10_ipc1"]
    assert (storage[storage.table == "storage"].column.str.contains("palettes bits")).any()
    real = parts["real_c10_ipc1"]
    t6 = real[real.table == "table6"]
    assert set(zip(t6.row, t6.column)) == {(row, f"{arch} IPC1") for arch in ("AlexNet", "ResNet18")
                                           for row in ("Random", "Random (labels shifted, control)")}
    assert len(t6) == 4 and (t6.n == 1).all() and t6.value.between(0, 100).all()
    for arch in ("AlexNet", "ResNet18"):                    # each architecture trained its own nets
        assert (t6[t6.column == f"{arch} IPC1"].note == f"evaluated on {arch}").all()
