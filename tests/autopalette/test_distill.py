"""A tiny end-to-end distillation: MTT and AutoPalette run, learn, and store what they claim to store."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from repro.autopalette.config import DistillConfig, ExpertConfig, NetConfig, PaletteConfig
from repro.autopalette.data import Preprocess
from repro.autopalette.distill import (accepts_update, decay_step, distill, initial_label_logits,
                                       start_epoch_upper_bound, store_palette_images)
from repro.autopalette.experts import make_net, train_expert
from repro.common.augment import DSAParams


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 20)
    images[labels == 1, :, :, 0] //= 3                      # make the classes a little separable
    pre = Preprocess.for_dataset("cifar10", images, zca=False, zca_eps=0.1, device="cpu")
    x, y = pre.to_net(images, "cpu"), torch.from_numpy(labels)
    net_cfg = NetConfig(width=4, depth=2)
    trajs = torch.stack([train_expert(x, y, 3, net_cfg, ExpertConfig(epochs=3, batch_size=20), DSAParams(), s).params
                         for s in (0, 1)])
    net = make_net(net_cfg, 3, (16, 16), "cpu")
    return pre, x, y, trajs, net


def test_expert_trajectory_shape(setup):
    _, _, _, trajs, net = setup
    assert trajs.shape == (2, 4, net.num_params())
    assert not torch.equal(trajs[0, 0], trajs[0, -1])


def test_mtt_learns_images_and_lr(setup):
    pre, x, y, trajs, net = setup
    cfg = DistillConfig(iterations=6, syn_steps=3, max_start_epoch=1, lr_img=10.0, lr_lr=1e-5)
    init = x[::10]
    res = distill(init, y[::10], trajs, net, pre, cfg, DSAParams(), seed=0)
    assert len(res.losses) == 6 and all(math.isfinite(v) for v in res.losses)
    assert not torch.allclose(res.images, init)
    assert res.syn_lr != cfg.lr_teacher
    assert math.isfinite(res.seconds_per_iteration)
    assert res.palette_net is None


def test_autopalette_stores_at_most_k_colours(setup):
    pre, x, y, trajs, net = setup
    cfg = DistillConfig(iterations=4, syn_steps=2, max_start_epoch=1, lr_img=10.0, lr_lr=1e-6)
    res = distill(x[::5], y[::5], trajs, net, pre, cfg, DSAParams(), seed=0,
                  palette=PaletteConfig(hidden=8, loss_images=4), n_colors=8)
    stored = store_palette_images(res.images, res.palette_net, pre)
    assert stored["index"].shape == (12, 16, 16) and stored["palette"].shape == (12, 8, 3)
    for net_im, im, idx, pal in zip(stored["net_images"], stored["images"], stored["index"], stored["palette"]):
        # the float image evaluation trains on is exactly its index map + palette (network space)
        np.testing.assert_array_equal(net_im, pal[idx].transpose(2, 0, 1))
        assert len(np.unique(im.reshape(-1, 3), axis=0)) <= 8     # no ZCA: the 8-bit rendering keeps <= K colours


def test_soft_label_variant_learns_label_logits(setup):
    pre, x, y, trajs, net = setup
    cfg = DistillConfig(iterations=2, syn_steps=2, max_start_epoch=1, lr_img=10.0, soft_labels=True, lr_y=5.0)
    res = distill(x[::10], y[::10], trajs, net, pre, cfg, DSAParams(), seed=0, label_params=trajs[0, -1])
    assert res.label_logits is not None and res.label_logits.shape == (6, 3)
    init = initial_label_logits(net, trajs[0, -1], x[::10])
    assert not torch.allclose(res.label_logits, init)          # learned (SGD on lr_y)


def test_soft_labels_start_from_the_final_expert_snapshot(setup):
    """Official init for graph-cut/real inits (AutoPalette distill_quant.py @4b74b140): label_syn = logits of
    buffer[0][-1], the expert's *final* epoch, on the initial images -- not the last epoch loaded for matching."""
    pre, x, y, trajs, net = setup
    # max_start 1 + expert_epochs 2 loads snapshots 0..2 for matching; the final snapshot is 3.
    cfg = DistillConfig(iterations=1, syn_steps=1, max_start_epoch=1, soft_labels=True, threshold=1e-12)
    res = distill(x[::10], y[::10], trajs[:, :3], net, pre, cfg, DSAParams(), seed=0, label_params=trajs[0, 3])
    assert res.updates == 0                                    # gated: the logits are the initial ones
    torch.testing.assert_close(res.label_logits, net.forward_flat(trajs[0, 3], x[::10]))
    assert not torch.allclose(res.label_logits, net.forward_flat(trajs[0, 2], x[::10]))


def test_start_epoch_window_widens_as_the_official_formula():
    """Sequential_Generation: upper = min(current + int((max - current) * it / expansion_end), max); values for the
    official CIFAR-10 IPC 1 config (current 3, max 15, expansion_end_epoch 3000)."""
    cfg = DistillConfig(max_start_epoch=15, current_max_start_epoch=3, expansion_end_epoch=3000)
    expected = {0: 3, 249: 3, 250: 4, 1000: 7, 2999: 14, 3000: 15, 5000: 15}
    assert {it: start_epoch_upper_bound(it, cfg) for it in expected} == expected
    assert start_epoch_upper_bound(123, DistillConfig(max_start_epoch=15)) == 15   # window off: MTT


def test_threshold_gate_and_lr_decay_points():
    assert accepts_update(1.2, 1.2) and not accepts_update(1.2000001, 1.2) and accepts_update(9.0, None)
    # LambdaLR(k < Iteration // 3 -> 1 else 0.1): the 5000th updating step (0-based) of 15000 is the first at 0.1.
    assert decay_step(15000, 1 / 3) == 15000 // 3 == 5000
    assert decay_step(20000, 1 / 3) == 6666 and decay_step(15000, 0.5) == 7500 and decay_step(100, None) is None


def test_threshold_gate_skips_every_update_above_it(setup):
    pre, x, y, trajs, net = setup
    init = x[::10]
    cfg = DistillConfig(iterations=3, syn_steps=2, max_start_epoch=1, lr_img=10.0, lr_lr=1e-5, threshold=1e-9)
    res = distill(init, y[::10], trajs, net, pre, cfg, DSAParams(), seed=0)
    assert res.updates == 0 and torch.equal(res.images, init) and res.syn_lr == pytest.approx(cfg.lr_teacher)
    res = distill(init, y[::10], trajs, net, pre, replace(cfg, threshold=1e9), DSAParams(), seed=0)
    assert res.updates == 3 and not torch.equal(res.images, init)


def test_gsam_direction_is_the_official_decomposition():
    """buffer/gsam/gsam.py gradient_decompose: v = g - cos(g, g_p) ||g|| g_p / ||g_p||, d = g_p - alpha v.
    g = (1, 0), g_p = (1, 1): cos = 1/sqrt2, v = (1, 0) - (1/sqrt2)(1)(1, 1)/sqrt2 = (0.5, -0.5);
    alpha 0.3 -> d = (0.85, 1.15); alpha 0 -> plain SAM (g_p)."""
    from repro.autopalette.experts import gsam_direction

    g, gp = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    torch.testing.assert_close(gsam_direction(g, gp, 0.3), torch.tensor([0.85, 1.15]))
    torch.testing.assert_close(gsam_direction(g, gp, 0.0), gp)
    torch.testing.assert_close(gsam_direction(gp, gp, 0.7), gp)       # parallel gradients: nothing to remove


def test_gsam_experts_record_a_trajectory_that_differs_from_sgd(setup):
    pre, x, y, trajs, net = setup
    cfg = ExpertConfig(epochs=2, batch_size=20, sam_rho=0.05, sam_alpha=0.3)
    sam = train_expert(x, y, 3, NetConfig(width=4, depth=2), cfg, DSAParams(), 0).params
    sgd = train_expert(x, y, 3, NetConfig(width=4, depth=2), replace(cfg, sam_rho=None), DSAParams(), 0).params
    assert sam.shape == sgd.shape == (3, net.num_params())
    torch.testing.assert_close(sam[0], sgd[0])                          # same initialisation
    assert not torch.allclose(sam[-1], sgd[-1]) and torch.isfinite(sam).all()


def test_checkpoints_at_the_official_evaluation_points(setup):
    """The official loop evaluates at it in range(0, Iteration + 1, eval_it); we call back at 0, every k, and the end."""
    pre, x, y, trajs, net = setup
    seen = []
    cfg = DistillConfig(iterations=5, syn_steps=1, max_start_epoch=1, lr_img=10.0)
    distill(x[::10], y[::10], trajs, net, pre, cfg, DSAParams(), seed=0, checkpoint_every=2,
            on_checkpoint=lambda it, state: seen.append((it, state.images.clone())))
    assert [it for it, _ in seen] == [0, 2, 4, 5]
    torch.testing.assert_close(seen[0][1], x[::10])                    # before any update
    assert not torch.equal(seen[-1][1], x[::10])


def test_bench_times_the_settings_it_is_given():
    """`bench --syn-steps --batch-syn`: the table's MTT setting, not the run's own (config/bench.yaml)."""
    from repro.autopalette.bench import bench
    from repro.autopalette.cli import load_config

    cfg = load_config("smoke")
    run = cfg.run_distill(cfg.runs["mtt_c10_ipc1"])
    out = bench(cfg, ["mtt_c10_ipc1"], torch.device("cpu"), train_images=64, iterations=2,
                overrides={"syn_steps": run.syn_steps + 1, "batch_syn": 5})
    entry = out["runs"]["mtt_c10_ipc1"]
    assert (entry["syn_steps"], entry["batch_syn"], entry["images"]) == (run.syn_steps + 1, 5, 10)
    assert math.isfinite(entry["seconds_per_iteration"]) and entry["seconds_per_iteration"] > 0
    plain = bench(cfg, ["mtt_c10_ipc1"], torch.device("cpu"), train_images=64, iterations=2)["runs"]["mtt_c10_ipc1"]
    assert plain["syn_steps"] == run.syn_steps
