"""Shared fixtures of the NAS tests: tiny searches that finish in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # The searches in these tests are tiny; one thread keeps their timing stable on a shared machine.
    torch.set_num_threads(1)


@pytest.fixture
def tiny_search() -> list[str]:
    """Command-line options of a search that runs in about a second (3 steps per epoch)."""
    return ["--dataset", "digits", "--train-subset", "96", "--batch-size", "16", "--channels", "2",
            "--cells-per-stage", "1", "--epochs", "2", "--solver-max-iter", "2", "--alpha-lr", "0.05", "--no-progress"]
