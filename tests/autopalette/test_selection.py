"""Graph-cut selection: greedy gains, diversity, and the gradient similarity."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.autopalette.selection import (gradient_similarity, graph_cut_gain, graph_cut_value, greedy_graph_cut,
                                         rank_per_class, select_per_class, stochastic_greedy_graph_cut,
                                         stochastic_sample_size)
from repro.common.nets import ConvNet


def random_similarity(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.randn(n, 5, generator=g), dim=1)
    return 0.5 + 0.5 * v @ v.T


def test_gain_equals_difference_of_graph_cut_values():
    sim = random_similarity(7)
    members = [1, 4]
    mask = torch.zeros(7, dtype=torch.bool)
    mask[members] = True
    gains = graph_cut_gain(sim, mask, lam=1.0)
    for k in range(7):
        if k in members:
            continue
        expected = graph_cut_value(sim, members + [k], 1.0) - graph_cut_value(sim, members, 1.0)
        assert abs(gains[k].item() - expected) < 1e-5


def test_greedy_matches_exhaustive_first_choice_and_is_greedy_at_each_step():
    sim = random_similarity(8, seed=3)
    order = greedy_graph_cut(sim, 4, lam=0.5)
    assert len(set(order)) == 4
    for step in range(4):
        chosen = order[:step]
        best = max((k for k in range(8) if k not in chosen),
                   key=lambda k: graph_cut_value(sim, chosen + [k], 0.5))
        assert order[step] == best


def test_greedy_avoids_duplicates_of_what_it_already_has():
    # two tight clusters of 3 near-duplicates each; picking 2 must take one of each cluster
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    feats = torch.stack([a, a, a, b, b, b]) + 0.01 * torch.randn(6, 2)
    v = F.normalize(feats, dim=1)
    sim = 0.5 + 0.5 * v @ v.T
    order = greedy_graph_cut(sim, 2, lam=1.0)
    assert {o // 3 for o in order} == {0, 1}


def test_gradient_similarity_equals_cosine_of_explicit_last_layer_gradients():
    net = ConvNet(3, 4, width=4, depth=2, im_size=(8, 8))
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 1])
    grads = []
    for i in range(5):
        net.zero_grad()
        F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([net.classifier.weight.grad.flatten(), net.classifier.bias.grad]))
    g = F.normalize(torch.stack(grads), dim=1)
    torch.testing.assert_close(gradient_similarity(net, x, y), 0.5 + 0.5 * g @ g.T, atol=1e-5, rtol=1e-5)


def test_rank_per_class_returns_dataset_indices_of_the_right_class():
    net = ConvNet(3, 3, width=4, depth=2, im_size=(8, 8))
    y = torch.tensor([0, 1, 2] * 4)
    x = torch.randn(12, 3, 8, 8)
    indices = torch.arange(100, 112).numpy()
    ranking = rank_per_class(net, x, y, indices, 3, lam=1.0)
    assert ranking.shape == (3, 3)
    for c in range(3):
        assert all(y[i - 100].item() == c for i in ranking[c])
        assert len(set(ranking[c].tolist())) == 3


def test_stochastic_sample_size_is_the_official_formula():
    """StochasticGreedy (AutoPalette selection/graphcut.py @4b74b140): max(round(-ln(0.9) * n / budget), 1);
    -ln 0.9 = 0.10536. CIFAR-10 (5000 per class) at 4 / 40 / 200 images per class; CIFAR-100 (500) at 4 / 40."""
    assert stochastic_sample_size(5000, 4) == 132          # 131.7
    assert stochastic_sample_size(5000, 40) == 13          # 13.17
    assert stochastic_sample_size(5000, 200) == 3          # 2.63
    assert stochastic_sample_size(500, 4) == 13            # 13.17
    assert stochastic_sample_size(500, 40) == 1            # 1.317: one random candidate per step
    assert stochastic_sample_size(500, 200) == 1           # 0.26 -> floor at 1


def test_stochastic_greedy_is_exact_greedy_when_it_sees_every_candidate():
    sim = random_similarity(12, seed=4)
    # epsilon -> 0 makes the sample size exceed n: every step scores all unselected candidates
    assert stochastic_greedy_graph_cut(sim, 5, 1.0, epsilon=1e-12) == greedy_graph_cut(sim, 5, 1.0)


def test_stochastic_greedy_with_one_candidate_per_step_is_a_uniform_draw():
    sim = random_similarity(30, seed=5)
    picks = stochastic_greedy_graph_cut(sim, 10, 1.0, epsilon=0.9, rng=np.random.default_rng(3))   # size 1
    rng = np.random.default_rng(3)
    taken, expected = np.zeros(30, bool), []
    for _ in range(10):
        k = int(rng.choice(np.flatnonzero(~taken), size=1, replace=False)[0])
        expected.append(k)
        taken[k] = True
    assert picks == expected


def test_stochastic_greedy_beats_random_picks_on_average():
    sim = random_similarity(200, seed=6)
    g = torch.Generator().manual_seed(0)
    values = [graph_cut_value(sim, stochastic_greedy_graph_cut(sim, 10, 1.0, rng=np.random.default_rng(s)), 1.0)
              for s in range(5)]
    randoms = [graph_cut_value(sim, torch.randperm(200, generator=g)[:10].tolist(), 1.0) for _ in range(20)]
    assert min(values) > max(randoms)


def test_select_per_class_makes_one_selection_per_budget():
    net = ConvNet(3, 2, width=4, depth=2, im_size=(8, 8))
    y = torch.tensor([0, 1] * 20)
    x = torch.randn(40, 3, 8, 8)
    indices = np.arange(1000, 1040)
    out = select_per_class(net, x, y, indices, [2, 5], lam=1.0, greedy="stochastic", seed=1)
    assert set(out) == {2, 5} and out[2].shape == (2, 2) and out[5].shape == (2, 5)
    for b in (2, 5):
        for c in range(2):
            assert all(y[i - 1000].item() == c for i in out[b][c]) and len(set(out[b][c].tolist())) == b
    with pytest.raises(ValueError):
        stochastic_greedy_graph_cut(random_similarity(3), 4)


def test_cifar100_paper_selection_runs_on_500_image_classes(tmp_path):
    """Issue 12: pool_per_class 5000 crashed on CIFAR-100's 500 images per class. The paper block now takes the whole
    class; run its selection (budgets 4, 40, 200 per class at 64 colours) on 500-image classes (8x8, 3 classes,
    a tiny net and one epoch to keep it fast)."""
    from dataclasses import replace

    from repro.autopalette.config import AutoPaletteConfig, NetConfig
    from repro.autopalette.pipeline import run_selection
    from repro.common.config import load_paper_config
    from repro.common.data.canonical import Split, save_split
    from repro.common.io import load_npz

    cfg = AutoPaletteConfig.from_dict(load_paper_config("autopalette", "paper"))
    cfg = replace(cfg, net=NetConfig(width=4, depth=3), selection=replace(cfg.selection, epochs=1))
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 500)
    split = Split(images=rng.integers(0, 256, (1500, 8, 8, 3), dtype=np.uint8), labels=labels,
                  class_names=("a", "b", "c"), name="cifar100", split="train")
    save_split(tmp_path / "train.npz", split)
    run_selection(cfg, "cifar100", 64, tmp_path / "train.npz", tmp_path / "sel.npz", "cpu")
    out = load_npz(tmp_path / "sel.npz")
    assert out["budgets"].tolist() == [4, 40, 200]
    for b in (4, 40, 200):
        sel = out[f"selection_{b}"]
        assert sel.shape == (3, b)
        for c in range(3):
            assert (labels[sel[c]] == c).all() and len(set(sel[c].tolist())) == b
