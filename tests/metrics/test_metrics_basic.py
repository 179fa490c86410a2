"""PSNR, SSIM, accuracy and mean ± std pinned to known values and to an independent reference."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from repro.common.metrics.aggregate import mean_std
from repro.common.metrics.classification import accuracy
from repro.common.metrics.image import psnr, ssim


def test_psnr_known_pairs():
    x = np.zeros((2, 8, 8, 3))
    y = x.copy()
    y[0] += 0.1                      # MSE 0.01 -> 20 dB
    y[1, ..., 0] = 1.0               # MSE 1/3 -> 10 log10(3) dB
    p = psnr(x, y)
    assert p[0].item() == pytest.approx(20.0, abs=1e-9)
    assert p[1].item() == pytest.approx(10 * math.log10(3), abs=1e-9)
    assert math.isinf(psnr(x, x)[0].item())
    # data range 255 on uint8-scale values gives the same number
    assert psnr(x * 255, y * 255, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-9)
    # channels-first tensors
    assert psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1), channels_last=False).item() == \
        pytest.approx(20.0, abs=1e-6)


def _ssim_reference(a, b, sigma=1.5, k1=0.01, k2=0.03):
    """Wang et al. 2004 with scipy's Gaussian filter (truncate 3.5 -> 11 taps), valid region, population stats."""
    f = lambda t: gaussian_filter(t, sigma, truncate=3.5, mode="constant")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = k1**2, k2**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s[5:-5, 5:-5].mean()


def test_ssim_identity_and_reference():
    rng = np.random.default_rng(0)
    a = gaussian_filter(rng.random((32, 32)), 2)
    b = np.clip(a + 0.05 * rng.standard_normal((32, 32)), 0, 1)
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b).item() == pytest.approx(_ssim_reference(a, b), abs=1e-10)
    assert ssim(a, b).item() < 0.95
    rgb = np.stack([a, b, a], -1)
    rgb2 = np.stack([b, b, a], -1)
    expected = np.mean([_ssim_reference(a, b), 1.0, 1.0])
    assert ssim(rgb, rgb2).item() == pytest.approx(expected, abs=1e-10)
    with pytest.raises(ValueError, match="smaller"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 2, 2, 2])
    assert accuracy(logits, labels) == pytest.approx(0.5)
    assert accuracy(logits, labels, k=2) == pytest.approx(1.0)
    assert accuracy(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy(torch.zeros(0, 3), torch.zeros(0))


def test_mean_std():
    m = mean_std([1.0, 2.0, 3.0, 4.0])
    assert (m.mean, m.std, m.n) == (2.5, pytest.approx(math.sqrt(1.25)), 4)
    assert mean_std([1.0, 2.0, 3.0, 4.0], ddof=1).std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([7.0]).std == 0.0 and math.isnan(mean_std([7.0], ddof=1).std)
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([1.0, float("nan")])
