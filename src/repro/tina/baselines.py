"""Baselines that need no generator: nearest-text retrieval from the zoo (the generic and fine-tuned baselines are
read straight from the zoo, see `zoo.generic_heads` and the zoo's test-task p-models).

Retrieval: for a new task, take the zoo p-model whose task text is nearest, and map the new task's classes onto
its class slots. Task-to-task similarity is the best one-to-one matching of class-name embeddings (cosine, Hungarian
assignment), averaged over the new task's classes; only zoo tasks with at least as many classes are candidates, so
every class gets a slot. This is a "classifier selection" baseline of the kind the paper compares with (paper sheet
section 5; its exact form in the paper is UNVERIFIED).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def retrieve_heads(query_slots: Tensor, zoo_slots: Tensor, zoo_weight: Tensor, zoo_bias: Tensor,
                   class_emb: Tensor) -> tuple[Tensor, Tensor, np.ndarray]:
    """Heads for `query_slots` [Q, K] assembled from the nearest zoo task; also returns the chosen zoo indices."""
    emb = torch.nn.functional.normalize(class_emb.float(), dim=1).numpy()
    sim = emb @ emb.T
    zoo = [[c for c in task if c >= 0] for task in zoo_slots.tolist()]
    Q, K = query_slots.shape
    weight = torch.zeros(Q, K, zoo_weight.shape[-1])
    bias = torch.zeros(Q, K)
    chosen = np.full(Q, -1)
    for q, task in enumerate(query_slots.tolist()):
        classes = [c for c in task if c >= 0]
        best = (-np.inf, None, None)
        for z, ztask in enumerate(zoo):
            if len(ztask) < len(classes):
                continue
            s = sim[np.ix_(classes, ztask)]
            rows, cols = linear_sum_assignment(s, maximize=True)
            score = s[rows, cols].mean()
            if score > best[0]:
                best = (score, z, cols[np.argsort(rows)])
        _, z, cols = best
        if z is None:
            raise ValueError(f"no zoo task has {len(classes)} or more classes to retrieve from")
        chosen[q] = z
        idx = torch.as_tensor(cols, dtype=torch.long)
        weight[q, :len(classes)] = zoo_weight[z, idx]
        bias[q, :len(classes)] = zoo_bias[z, idx]
    return weight, bias, chosen
