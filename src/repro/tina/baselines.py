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


def retrieve(query_slots: Tensor, zoo_slots: Tensor, class_emb: Tensor) -> tuple[Tensor, Tensor]:
    """For each query task [Q, K]: the nearest zoo task, and for each query slot the zoo task's slot that serves it
    (-1 for unused slots). `ParamLayout.select_classes(zoo_flat[chosen], idx)` assembles the retrieved models."""
    emb = torch.nn.functional.normalize(class_emb.float(), dim=1).numpy()
    sim = emb @ emb.T
    zoo = [[c for c in task if c >= 0] for task in zoo_slots.tolist()]
    Q, K = query_slots.shape
    index = torch.full((Q, K), -1, dtype=torch.long)
    chosen = torch.full((Q,), -1, dtype=torch.long)
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
        # The query's slots hold its classes in order (slot_matrix), so slot j is served by zoo slot cols[j].
        index[q, :len(classes)] = torch.as_tensor(cols, dtype=torch.long)
    return chosen, index
