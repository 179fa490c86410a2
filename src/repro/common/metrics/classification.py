"""Classification accuracy (distilled and personalised accuracy are top-1 on the held-out test split)."""

from __future__ import annotations

import numpy as np
import torch


def accuracy(scores_or_preds: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *, k: int = 1) -> float:
    """Top-k accuracy in [0, 1]. `scores_or_preds`: logits/scores [N, C] or predicted labels [N]."""
    s = torch.as_tensor(scores_or_preds)
    y = torch.as_tensor(labels).to(torch.long).reshape(-1)
    if len(y) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    if s.ndim == 1:
        if k != 1:
            raise ValueError("top-k accuracy with k > 1 needs scores [N, C], not labels")
        hits = s.to(torch.long) == y
    elif s.ndim == 2:
        if s.shape[0] != len(y):
            raise ValueError(f"{s.shape[0]} score rows for {len(y)} labels")
        hits = (s.topk(k, dim=1).indices == y[:, None]).any(dim=1)
    else:
        raise ValueError(f"expected scores [N, C] or labels [N], got shape {tuple(s.shape)}")
    return float(hits.to(torch.float64).mean())
