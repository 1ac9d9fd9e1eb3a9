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


class Interrupted(RuntimeError):
    """The caller's ``should_stop()`` returned True while a hypergradient was being computed.

    Nothing was returned or written (``backward`` leaves every ``.grad`` as it was); the caller decides
    what an unfinished step means (an HPO run out of time stops there).

    Attributes:
        estimator: name of the estimator that was stopped (e.g. ``"CG"``).
        products: Hessian-vector (or Jacobian) products or unrolled steps completed before the stop.
    """

    def __init__(self, estimator: str, products: int) -> None:
        self.estimator = estimator
        self.products = products
        super().__init__(f"{estimator}: stopped by should_stop() after {products} products; no hypergradient returned")
