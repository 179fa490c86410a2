"""Colour-guided initialisation: graph-cut selection on Median-Cut-quantised images (AutoPalette section 3.4,
Eq. 9-11, Algorithm 1, App. A.3; official code `selection/main.py`, `selection/graphcut.py`).

Per class, the candidate images are quantised with Median Cut, a selection network trained on them gives each
image the gradient of its cross-entropy loss with respect to the last (linear) layer, and images are picked
greedily to maximise the generalised graph cut

    f(S) = sum_{i in V} sum_{j in S} s_ij - lam * sum_{i in S} sum_{j in S} s_ij,      s_ij = 0.5 + 0.5 cos(g_i, g_j)

(lam = 1 and the 0.5 + 0.5 cos similarity as in the code), whose marginal (conditional) gain for adding k is
sum_i s_ik - lam * (2 sum_{j in S} s_jk + s_kk): representative of the class, and diverse.

The last-layer gradient of example i is g_i = (p_i - y_i) (x) [h_i, 1] (weight and bias of the linear layer, h_i its
input features), so cos(g_i, g_j) = cos(p_i - y_i, p_j - y_j) * cos([h_i, 1], [h_j, 1]): the similarity matrix is
computed from two small Gram matrices without materialising the K x D gradients.

Optimiser: the official code's stochastic greedy (`StochasticGreedy`, epsilon 0.9; selection/graphcut.py,
KeViNYuAn0314/AutoPalette @4b74b140): each of the `budget` steps draws max(round(-ln(eps) * n / budget), 1) of the
unselected candidates uniformly and adds the best of them. Its sample size depends on the budget, so a selection is
made per budget (not a prefix of one ranking). With n = 500 (a CIFAR-100 class) and budget 40 it draws 1 candidate
per step: the "selection" is then uniform random. `greedy_graph_cut` is the exact greedy, kept as an option.
Two further differences of the official code, recorded here and not followed: its gain is lam * colsum - 2 *
sum_{j in S} s_jk (the paper's Eq. 11 with lam = 1 up to a constant; they differ for lam != 1), and at commit
4b74b140 `finish_run` calls `calc_feature` (cosine of penultimate features), not the last-layer gradients of Eq. 10
("note this is to calculate feature experiments"); we follow the paper's gradients.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.common.nets import ConvNet


def graph_cut_gain(sim: Tensor, selected: Tensor, lam: float) -> Tensor:
    """Marginal gain of adding each element to the set given by the boolean mask `selected`."""
    return sim.sum(0) - lam * (2 * (sim * selected.unsqueeze(1).to(sim.dtype)).sum(0) + sim.diagonal())


def graph_cut_value(sim: Tensor, members: list[int], lam: float) -> float:
    """f(S) for the generalised graph cut (for tests and diagnostics)."""
    if not members:
        return 0.0
    s = sim[:, members]
    return float(s.sum() - lam * s[members].sum())


def greedy_graph_cut(sim: Tensor, k: int, lam: float = 1.0) -> list[int]:
    """Greedily pick `k` elements maximising the graph cut; returns them in the order picked."""
    n = sim.shape[0]
    if k > n:
        raise ValueError(f"cannot select {k} of {n} candidates")
    colsum = sim.sum(0)
    acc = torch.zeros_like(colsum)                     # sum_{j in S} s_jk
    taken = torch.zeros(n, dtype=torch.bool, device=sim.device)
    order: list[int] = []
    diag = sim.diagonal()
    for _ in range(k):
        gain = colsum - lam * (2 * acc + diag)
        gain = gain.masked_fill(taken, -torch.inf)
        best = int(gain.argmax())
        order.append(best)
        taken[best] = True
        acc += sim[best]
    return order


def stochastic_sample_size(n: int, budget: int, epsilon: float = 0.9) -> int:
    """Candidates drawn per step by the official StochasticGreedy: max(round(-ln(epsilon) * n / budget), 1)."""
    return max(round(-math.log(epsilon) * n / budget), 1)


def stochastic_greedy_graph_cut(sim: Tensor, budget: int, lam: float = 1.0, epsilon: float = 0.9,
                                rng: np.random.Generator | None = None) -> list[int]:
    """Stochastic greedy (Mirzasoleiman et al. 2015, as the official selection code): at step i draw
    min(sample_size, n - i) unselected candidates uniformly without replacement, add the one of largest gain."""
    n = sim.shape[0]
    if budget > n:
        raise ValueError(f"cannot select {budget} of {n} candidates")
    rng = rng or np.random.default_rng(0)
    size = stochastic_sample_size(n, budget, epsilon)
    colsum = sim.sum(0)
    acc = torch.zeros_like(colsum)
    diag = sim.diagonal()
    taken = np.zeros(n, dtype=bool)
    order: list[int] = []
    for i in range(budget):
        cand = rng.choice(np.flatnonzero(~taken), size=min(size, n - i), replace=False)
        c = torch.from_numpy(cand).to(sim.device)
        gain = colsum[c] - lam * (2 * acc[c] + diag[c])
        best = int(cand[int(gain.argmax())])
        order.append(best)
        taken[best] = True
        acc += sim[best]
    return order


@torch.no_grad()
def gradient_similarity(net: ConvNet, x: Tensor, y: Tensor, batch_size: int = 500) -> Tensor:
    """0.5 + 0.5 cos of the last-layer cross-entropy gradients of (x, y) under `net` ([N, N])."""
    net.eval()
    errs, feats = [], []
    for i in range(0, x.shape[0], batch_size):
        h = net.embed(x[i:i + batch_size])
        p = F.softmax(net.classifier(h), dim=1)
        errs.append(p - F.one_hot(y[i:i + batch_size], p.shape[1]).to(p.dtype))
        feats.append(torch.cat([h, torch.ones_like(h[:, :1])], 1))
    e = F.normalize(torch.cat(errs), dim=1)
    h = F.normalize(torch.cat(feats), dim=1)
    return 0.5 + 0.5 * (e @ e.T) * (h @ h.T)


def select_per_class(net: ConvNet, x: Tensor, y: Tensor, indices: np.ndarray, budgets: list[int], lam: float,
                     greedy: str = "stochastic", epsilon: float = 0.9, seed: int = 0) -> dict[int, np.ndarray]:
    """For every budget b, per class b entries of `indices` (dataset indices of x's rows) in pick order:
    {b: [classes, b]}. The similarity matrix of a class is computed once and shared by the budgets."""
    classes = torch.unique(y).tolist()
    out = {b: np.empty((len(classes), b), np.int64) for b in budgets}
    for row, c in enumerate(classes):
        members = torch.nonzero(y == c).flatten()
        sim = gradient_similarity(net, x[members], y[members])
        for b in budgets:
            if greedy == "exact":
                order = greedy_graph_cut(sim, b, lam)
            else:
                order = stochastic_greedy_graph_cut(sim, b, lam, epsilon, np.random.default_rng([seed, c, b]))
            out[b][row] = indices[members.cpu().numpy()[order]]
    return out


def rank_per_class(net: ConvNet, x: Tensor, y: Tensor, indices: np.ndarray, count: int, lam: float
                   ) -> np.ndarray:
    """Exact-greedy ranking of `count` entries per class (prefixes are the exact-greedy selections)."""
    return select_per_class(net, x, y, indices, [count], lam, greedy="exact")[count]
