import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _few_threads():
    """The machine is shared: keep torch to one thread in unit tests."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ.get("REPRO_MIRROR") or ROOT.parent / "shared" / "mirror")
    if not path.is_dir():
        pytest.skip(f"offline mirror not found at {path}")
    return path
