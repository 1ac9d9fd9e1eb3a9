"""Shared fixtures: float64 by default for the correctness tests, deterministic seeds."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seed(request):
    if request.node.get_closest_marker("float32"):
        yield
        return
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def pytest_configure(config):
    config.addinivalue_line("markers", "float32: run without switching the default dtype to float64")
