"""Fixtures shared by the core tests."""
import pytest
import torch


@pytest.fixture
def torch_single_thread_seeded():
    """One torch thread and seed 0 for the test (restores the thread count afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)
