"""Palette network, quantisation and the three palette losses on small inputs with known answers."""

import math

import numpy as np
import pytest
import torch

from repro.autopalette.palette import (PaletteNet, alignment_loss, hard_assign, hard_quantize, max_colour_loss,
                                       median_cut, palette_balance_loss, soft_quantize)


def onehot_m(index: torch.Tensor, k: int) -> torch.Tensor:
    """[N, H, W] bucket indices -> one-hot probabilities [N, K, H, W]."""
    return torch.nn.functional.one_hot(index, k).permute(0, 3, 1, 2).float()


def test_palette_net_outputs_distributions_over_k():
    net = PaletteNet(n_colors=8, hidden=16)
    m = net(torch.randn(3, 3, 5, 7))
    assert m.shape == (3, 8, 5, 7)
    torch.testing.assert_close(m.sum(1), torch.ones(3, 5, 7))
    assert (m >= 0).all()
    # second layer has no bias (App. A.2)
    assert net.net[2].bias is None


def test_max_colour_loss_known_values():
    k = 4
    index = torch.tensor([[[0, 1], [2, 3]]])               # every bucket owns one pixel with certainty
    assert max_colour_loss(onehot_m(index, k)).item() == pytest.approx(-1.0)
    uniform = torch.full((2, k, 3, 3), 1.0 / k)
    assert max_colour_loss(uniform).item() == pytest.approx(-1.0 / k)
    # two buckets never chosen: their max is 0 -> mean over buckets is -(1 + 1 + 0 + 0) / 4
    index = torch.tensor([[[0, 1], [1, 0]]])
    assert max_colour_loss(onehot_m(index, k)).item() == pytest.approx(-0.5)


def test_palette_balance_loss_known_values():
    k = 4
    index = torch.tensor([[[0, 1], [2, 3]]])                # equal usage: entropy log K
    assert palette_balance_loss(onehot_m(index, k)).item() == pytest.approx(-math.log(k))
    index = torch.zeros(1, 2, 2, dtype=torch.long)           # one bucket: entropy 0
    assert palette_balance_loss(onehot_m(index, k)).item() == pytest.approx(0.0, abs=1e-6)
    index = torch.tensor([[[0, 0], [0, 1]]])                 # usage (3/4, 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert palette_balance_loss(onehot_m(index, k)).item() == pytest.approx(-h, rel=1e-5)


def test_alignment_loss_zero_when_partitions_agree_up_to_relabelling():
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    m_same = onehot_m(target, 3)
    relabelled = onehot_m(torch.tensor([[[2, 2, 0], [0, 1, 1]]]), 3)
    assert alignment_loss(m_same, target, sample_ratio=1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert alignment_loss(relabelled, target, sample_ratio=1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_alignment_loss_known_value_for_a_collapsed_assignment():
    # 4 pixels, target: two groups {0,1} and {2,3}; assignment: everything in bucket 0.
    target = torch.tensor([[[0, 0], [1, 1]]])
    m = onehot_m(torch.zeros(1, 2, 2, dtype=torch.long), 2)
    # soft self-similarity: all ones -> rows normalised to 1/2 each.
    # target self-similarity rows: (1,1,0,0) -> (1/sqrt2, 1/sqrt2, 0, 0).
    # squared difference per row: 2 * (1/2 - 1/sqrt2)^2 + 2 * (1/2)^2, same for all 4 rows.
    # Official PixelSimLoss (AutoPalette color_cnn_plus.py @4b74b140): ||A_src - A_tgt||_F^2 / S with S = 4 pixels.
    per_row = 2 * (0.5 - 2 ** -0.5) ** 2 + 2 * 0.25
    expected = 4 * per_row / 4
    assert alignment_loss(m, target, sample_ratio=1.0).item() == pytest.approx(expected, rel=1e-5)


def _official_pixsim(prob: np.ndarray, onehot: np.ndarray, idx: np.ndarray) -> float:
    """The official formula written out in numpy (our own code): per image b with sampled pixels idx[b],
    A = f^T f, columns L2-normalised, loss = mean_b ||A_src - A_tgt||_F^2 / S."""
    out = []
    for b in range(prob.shape[0]):
        fs, ft = prob[b].reshape(prob.shape[1], -1)[:, idx[b]], onehot[b].reshape(onehot.shape[1], -1)[:, idx[b]]
        a_s, a_t = fs.T @ fs, ft.T @ ft
        a_s = a_s / np.linalg.norm(a_s, axis=0, keepdims=True)
        a_t = a_t / np.linalg.norm(a_t, axis=0, keepdims=True)
        out.append(((a_s - a_t) ** 2).sum() / idx.shape[1])
    return float(np.mean(out))


def test_alignment_loss_matches_the_official_normalisation_at_32x32():
    """S = int(1024 * 0.3) = 307 pixels per image, each image its own sample; the loss is the Frobenius norm^2 / S
    (not the mean over S^2 entries, which is 307x weaker)."""
    torch.manual_seed(0)
    k = 8
    m = torch.softmax(2 * torch.randn(3, k, 32, 32, dtype=torch.float64), 1)
    target = torch.randint(0, k, (3, 32, 32))
    gen = torch.Generator().manual_seed(5)
    ours = alignment_loss(m, target, 0.3, generator=gen).item()
    idx = torch.rand(3, 1024, generator=torch.Generator().manual_seed(5)).argsort(1)[:, :307].numpy()
    assert idx.shape[1] == 307 and len(set(idx[0])) == 307 and not np.array_equal(idx[0], idx[1])
    onehot = onehot_m(target, k).double().numpy()
    official = _official_pixsim(m.numpy(), onehot, idx)
    assert ours == pytest.approx(official, rel=1e-10)
    mean_over_entries = official / 307                   # the old, S-times weaker normalisation
    assert ours == pytest.approx(307 * mean_over_entries, rel=1e-10) and ours > 100 * mean_over_entries


def test_alignment_loss_gradient_pulls_towards_target():
    target = torch.tensor([[[0, 0], [1, 1]]])
    logits = (0.1 * torch.randn(1, 2, 2, 2)).requires_grad_(True)   # off the symmetric saddle
    opt = torch.optim.SGD([logits], lr=5.0)
    first = None
    for _ in range(50):
        loss = alignment_loss(torch.softmax(logits, 1), target, sample_ratio=1.0)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_soft_quantize_with_one_hot_assignment_equals_hard_quantize():
    x = torch.randn(2, 3, 4, 4)
    index = torch.randint(0, 5, (2, 4, 4))
    soft_img, soft_pal = soft_quantize(x, onehot_m(index, 5))
    hard_img, hard_pal = hard_quantize(x, index, 5)
    torch.testing.assert_close(soft_img, hard_img)
    used = torch.stack([torch.bincount(i.flatten(), minlength=5) > 0 for i in index])
    torch.testing.assert_close(soft_pal[used], hard_pal[used])
    # each palette entry is the mean colour of its pixels (Eq. 4)
    sel = index[0] == index[0, 0, 0]
    torch.testing.assert_close(hard_pal[0, index[0, 0, 0]], x[0][:, sel].mean(1))


def test_hard_quantized_image_has_at_most_k_colours():
    net = PaletteNet(6, hidden=8)
    x = torch.randn(3, 3, 8, 8)
    img, _ = hard_quantize(x, hard_assign(net(x)), 6)
    for im in img:
        assert len(torch.unique(im.flatten(1).T, dim=0)) <= 6


def test_soft_quantize_is_differentiable_in_image_and_assignment():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    net = PaletteNet(4, hidden=8)
    img, _ = soft_quantize(x, net(x))
    img.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net.net[0].weight.grad is not None and net.net[0].weight.grad.abs().sum() > 0


def test_median_cut_reduces_colours():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    index, quantised = median_cut(images, 8)
    assert index.shape == (3, 16, 16) and quantised.shape == images.shape
    for q in quantised:
        assert len(np.unique(q.reshape(-1, 3), axis=0)) <= 8
    assert index.max() < 8
    with pytest.raises(ValueError):
        median_cut(images.astype(np.float32), 8)
