"""Shared building blocks used by AutoPalette: ConvNet functional forward, DSA, training loop."""

import pytest
import torch

from repro.common.augment import DSA, DSAParams, STRATEGIES
from repro.common.nets import ConvNet, convnet_d, flatten_params, functional_forward, load_flat, unflatten
from repro.common.train import TrainSpec, accuracy, soft_cross_entropy, train_classifier


def test_forward_flat_matches_module_and_is_differentiable():
    net = ConvNet(3, 10, width=8, depth=3)
    x = torch.randn(4, 3, 32, 32)
    flat = flatten_params(net).requires_grad_(True)
    out = net.forward_flat(flat, x)
    torch.testing.assert_close(out, net(x))
    torch.testing.assert_close(out, functional_forward(net, flat, x))
    g, = torch.autograd.grad(out.square().sum(), flat)
    assert g.shape == flat.shape and g.abs().sum() > 0


def test_unflatten_returns_views_without_copy():
    flat = torch.arange(10.0)
    a, b = unflatten(flat, [torch.Size([2, 3]), torch.Size([4])])
    assert a.data_ptr() == flat.data_ptr() and b.data_ptr() == flat.data_ptr() + 6 * flat.element_size()
    with pytest.raises(ValueError):
        unflatten(flat, [torch.Size([3])])


def test_load_flat_roundtrip_and_depth5():
    a, b = ConvNet(3, 5, width=4, depth=2, im_size=(16, 16)), ConvNet(3, 5, width=4, depth=2, im_size=(16, 16))
    load_flat(b, flatten_params(a))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(a(x), b(x))
    d5 = convnet_d(5, 3, 10, (128, 128), width=4)
    assert d5(torch.randn(1, 3, 128, 128)).shape == (1, 10) and d5.num_feat == 4 * 4 * 4


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_dsa_transform_keeps_shape_and_passes_gradients(strategy):
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    y = DSA(DSAParams(strategy=strategy))(x, seed=1)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_dsa_siamese_and_known_transforms():
    x = torch.rand(4, 3, 8, 8)
    aug = DSA()
    torch.testing.assert_close(aug(x, seed=7), aug(x, seed=7))
    flip = DSA(DSAParams(strategy="flip", prob_flip=1.0))
    torch.testing.assert_close(flip(x), x.flip(3))
    cut = DSA(DSAParams(strategy="cutout", ratio_cutout=0.5))(torch.ones(16, 1, 8, 8))
    assert ((cut == 0).flatten(1).sum(1) <= 16).all() and (cut == 0).any()   # at most a 4x4 square per image
    with pytest.raises(ValueError):
        DSA(DSAParams(strategy="color_blur"))


def test_soft_cross_entropy_matches_hard_labels_for_peaked_targets():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    peaked = 100.0 * torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(soft_cross_entropy(logits, peaked), soft_cross_entropy(logits, y))


def test_train_classifier_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    x[:, 0] += (2 * y - 1).view(-1, 1, 1).float()
    net = ConvNet(3, 2, width=8, depth=2, im_size=(8, 8))
    epochs = []
    train_classifier(net, x, y, TrainSpec(30, 0.05, 16), on_epoch_end=lambda e, n: epochs.append(e))
    assert epochs == list(range(1, 31))
    assert accuracy(net, x, y) > 0.9


def test_zca_whitens_and_is_off_by_default():
    import numpy as np

    from repro.autopalette.data import Preprocess

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (400, 4, 4, 1), dtype=np.uint8)
    images = np.concatenate([base, base // 2 + 60, 255 - base], axis=3)    # strongly correlated channels
    images = np.clip(images.astype(int) + rng.integers(-20, 21, images.shape), 0, 255).astype(np.uint8)
    plain = Preprocess.for_dataset("cifar10", images, zca=False, zca_eps=0.1, device="cpu")
    x = plain.to_net(images, "cpu")
    assert plain.net_input(x) is x
    white = Preprocess.for_dataset("cifar10", images, zca=True, zca_eps=1e-6, device="cpu")
    z = white.net_input(x).flatten(1)
    cov = torch.cov(z.T)
    torch.testing.assert_close(cov, torch.eye(cov.shape[0]), atol=0.05, rtol=0)
    # uint8 round trip of the normalisation
    np.testing.assert_array_equal(plain.to_uint8(x), images)
