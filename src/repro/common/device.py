"""Device choice: never hard-code `.cuda()`."""

from __future__ import annotations

import os


def pick_device(prefer: str | None = None):
    """`prefer` (or env REPRO_DEVICE) if given, else CUDA when available, else CPU."""
    import torch

    choice = prefer or os.environ.get("REPRO_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int | None) -> None:
    """Bound torch's intra-op threads to what the rule was given (Snakemake `threads`)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))


def describe_device() -> dict:
    """CPU count, and torch's threads and GPUs where the job used torch.

    A job that never imported torch (numpy-only computations, merges) did not use it: importing it here only to
    describe it would cost the job 3-5 s of start-up (measured for issue 15), so its record
    says so instead."""
    import sys

    info: dict = {"cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is None:
        info["torch"] = "not used"
        return info
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
