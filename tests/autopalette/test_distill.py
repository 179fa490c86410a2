"""A tiny end-to-end distillation: MTT and AutoPalette run, learn, and store what they claim to store."""

import math

import numpy as np
import pytest
import torch

from repro.autopalette.config import DistillConfig, ExpertConfig, NetConfig, PaletteConfig
from repro.autopalette.data import Preprocess
from repro.autopalette.distill import distill, store_palette_images
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
    for im, idx, pal in zip(stored["images"], stored["index"], stored["palette"]):
        assert len(np.unique(im.reshape(-1, 3), axis=0)) <= 8
        np.testing.assert_array_equal(im, pal[idx])          # the image is exactly its index map + palette


def test_soft_label_variant_learns_label_logits(setup):
    pre, x, y, trajs, net = setup
    cfg = DistillConfig(iterations=2, syn_steps=2, max_start_epoch=1, lr_img=10.0, soft_labels=True, lr_y=5.0)
    res = distill(x[::10], y[::10], trajs, net, pre, cfg, DSAParams(), seed=0)
    assert res.label_logits is not None and res.label_logits.shape == (6, 3)
