"""Shared building blocks used by AutoPalette: ConvNet functional forward, DSA, training loop."""

import pytest
import torch

from repro.common.augment import DSA, DSAParams, STRATEGIES
from repro.common.nets import ConvNet, convnet_d, flatten_params, functional_forward, load_flat, unflatten
from repro.common.train import TrainSpec, accuracy, predict, soft_cross_entropy, train_classifier


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


def test_predict_in_batches_is_the_one_batch_prediction_without_a_graph():
    """The test pass runs in cache-sized batches without autograd: the same predictions as one batch of all images
    with the graph recorded (per-sample layers only), and no layer sees grad mode on."""
    torch.manual_seed(0)
    net = convnet_d(3, 3, 10, (32, 32), width=16)
    x = torch.rand(600, 3, 32, 32)
    with torch.enable_grad():
        full = net.eval()(x)
    assert full.requires_grad
    seen = []
    net.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    net.train()
    pred = predict(net, x, batch_size=256)
    assert torch.equal(pred, full.argmax(1)) and len(seen) == 3 and not any(seen)
    assert net.training  # the mode it had
    assert accuracy(net, x, full.argmax(1)) == 1.0


def _correlated_images(n=400, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    images = np.concatenate([base, base // 2 + 60, 255 - base], axis=3)    # strongly correlated channels
    return np.clip(images.astype(int) + rng.integers(-20, 21, images.shape), 0, 255).astype(np.uint8)


def test_zca_whitens_and_is_off_by_default():
    import numpy as np

    from repro.autopalette.data import Preprocess

    images = _correlated_images()
    plain = Preprocess.for_dataset("cifar10", images, zca=False, zca_eps=0.1, device="cpu")
    x = plain.to_net(images, "cpu")
    assert plain.net_input(x) is x and plain.zca_matrix is None
    white = Preprocess.for_dataset("cifar10", images, zca=True, zca_eps=1e-6, device="cpu")
    z = white.to_net(images, "cpu").flatten(1)
    cov = torch.cov(z.T)
    torch.testing.assert_close(cov, torch.eye(cov.shape[0]), atol=0.05, rtol=0)
    # uint8 round trips: normalisation, and ZCA through its inverse
    np.testing.assert_array_equal(plain.to_uint8(x), images)
    np.testing.assert_array_equal(white.to_uint8(white.to_net(images, "cpu")), images)


def test_zca_is_the_official_one_on_raw_pixels():
    """Official (MTT/AutoPalette utils get_dataset with --zca: ToTensor() only, then kornia ZCAWhitening(eps=0.1)
    fitted on the [0, 1] train images): mean over images, unbiased covariance C = U S U^T, W = U (S + eps)^-1/2 U^T,
    z = (x - mean) W. Written out here in float64 numpy from the formula."""
    import numpy as np

    from repro.autopalette.data import Preprocess

    images = _correlated_images(300, seed=1)
    x = images.transpose(0, 3, 1, 2).reshape(len(images), -1).astype(np.float64) / 255   # CHW order, as ToTensor
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / (len(x) - 1)
    u, s, _ = np.linalg.svd(cov)
    w = u @ np.diag(1 / np.sqrt(s + 0.1)) @ u.T
    expected = (x - mean) @ w
    pre = Preprocess.for_dataset("cifar10", images, zca=True, zca_eps=0.1, device="cpu")
    ours = pre.to_net(images, "cpu").flatten(1).double().numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=0)
    # Not the old variant (ZCA with the same eps fitted on mean/std-normalised pixels): eps 0.1 is ~25x smaller
    # relative to the normalised variances, so it whitens much harder.
    xn = ((x.reshape(-1, 3, 16) - np.array([0.4914, 0.4822, 0.4465])[:, None])
          / np.array([0.2023, 0.1994, 0.2010])[:, None]).reshape(len(x), -1)
    un, sn, _ = np.linalg.svd((xn - xn.mean(0)).T @ (xn - xn.mean(0)) / (len(x) - 1))
    old_variant = (xn - xn.mean(0)) @ un @ np.diag(1 / np.sqrt(sn + 0.1)) @ un.T
    assert np.abs(old_variant - expected).max() > 0.5
