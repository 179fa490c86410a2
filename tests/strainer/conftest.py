import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    """The machine is shared: keep torch to one thread in unit tests."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
