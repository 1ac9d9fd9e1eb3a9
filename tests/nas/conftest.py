"""Shared fixtures of the NAS tests: tiny searches that finish in seconds on a CPU."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import torch

SHIPPED_TABLE = Path(__file__).resolve().parents[2] / "applications" / "nas" / "benchmark" / "data" / "nb201_accuracy.csv.gz"


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # The searches in these tests are tiny; one thread keeps their timing stable on a shared machine.
    torch.set_num_threads(1)


@pytest.fixture
def tiny_search() -> list[str]:
    """Command-line options of a search that runs in about a second (3 steps per epoch)."""
    return ["--dataset", "digits", "--train-subset", "96", "--batch-size", "16", "--channels", "2",
            "--cells-per-stage", "1", "--epochs", "2", "--solver-max-iter", "2", "--alpha-lr", "0.05", "--no-progress"]


@pytest.fixture(scope="session")
def shipped_rows() -> list[dict[str, str]]:
    """The rows of the NAS-Bench-201 table shipped in the package, read with gzip and csv alone (the reference
    the project's table reader is checked against)."""
    with gzip.open(SHIPPED_TABLE, "rt", newline="") as handle:
        return list(csv.DictReader(handle))
