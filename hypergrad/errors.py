"""Exceptions raised by hypergrad."""

from __future__ import annotations


class HypergradInputError(ValueError):
    """Bad input: mismatched parameter dicts, an unknown option, a value out of range."""


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared in a quantity an estimator computed.

    Attributes:
        estimator: name of the estimator that produced it (e.g. ``"CG"``).
        quantity: which quantity was not finite (e.g. ``"hypergradient['alpha']"``).
    """

    def __init__(self, estimator: str, quantity: str) -> None:
        self.estimator = estimator
        self.quantity = quantity
        super().__init__(f"{estimator}: {quantity} contains NaN or Inf")
