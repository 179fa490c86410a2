"""Explicit seeding: the same seed on the same machine gives the same numbers."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # numpy-only papers
        return
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng(seed: int, *streams: int) -> np.random.Generator:
    """An independent NumPy generator for (seed, stream...): draws for one purpose never shift another's."""
    return np.random.default_rng([seed, *streams])


def torch_generator(seed: int, device: str | None = None):
    import torch

    gen = torch.Generator(device=device or "cpu")
    gen.manual_seed(seed)
    return gen
