"""Graph-cut selection: greedy gains, diversity, and the gradient similarity."""

import itertools

import torch
import torch.nn.functional as F

from repro.autopalette.selection import (gradient_similarity, graph_cut_gain, graph_cut_value, greedy_graph_cut,
                                         rank_per_class)
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
