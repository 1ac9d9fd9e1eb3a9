"""Preconditioners a user asks for by name instead of writing ``r -> M⁻¹ r``: :class:`Jacobi`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hypergrad import tree
from hypergrad.errors import HypergradInputError
from hypergrad.operator import LinearOperator, MatVec
from hypergrad.solvers.diagonal import hutchinson_diagonal

Diagonal = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], Any], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Jacobi:
    """The diagonal (Jacobi) preconditioner ``M = diag(A) + δI`` of conjugate gradient.

    CG on a system whose diagonal spans orders of magnitude (per-feature regularisation exp(λ_j),
    badly scaled features) converges at the rate of κ(A); with M⁻¹ it converges at the rate of
    κ(M^{-½} A M^{-½}), which for a diagonally dominant A is close to 1. Use it as
    ``hg.CG(preconditioner=hg.Jacobi(...))``.

    Args:
        diagonal: ``diagonal(params, hparams, batch) -> dict like params``, the exact diagonal of the
            inner Hessian (for ridge ``λ + Σ_i x_ij²``, for logistic regression
            ``exp(λ_j) + Σ_i s_i(1 − s_i) x_ij²``): exact and free of products. None: estimated.
        samples: Hutchinson probes when ``diagonal`` is None (each one Hessian-vector product per
            hypergradient); entries are floored at ``floor``·max to stay positive.
        floor: the smallest entry, relative to the largest, an estimated diagonal may take.
        seed: the probes' generator seed.
    """

    diagonal: Diagonal | None = None
    samples: int = 10
    floor: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.diagonal is not None and not callable(self.diagonal):
            raise HypergradInputError(f"Jacobi(diagonal={self.diagonal!r}): expected a callable "
                                      "(params, hparams, batch) -> dict like params, or None")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise HypergradInputError(f"Jacobi(samples={self.samples!r}): expected an integer >= 1")
        if not isinstance(self.floor, (int, float)) or not 0 < self.floor < 1:
            raise HypergradInputError(f"Jacobi(floor={self.floor!r}): expected a number in (0, 1)")

    def build(self, op: LinearOperator, like: tree.Tree, damping: float = 0.0) -> MatVec:
        """``r -> M⁻¹ r`` for the operator ``op`` (+ δI)."""
        if self.diagonal is not None:
            diag = op.at_point(self.diagonal, "Jacobi diagonal(params, hparams, batch)")
            if not isinstance(diag, dict):
                raise HypergradInputError(f"Jacobi diagonal returned a {type(diag).__name__}; expected a dict like params")
            tree.check_like(like, diag, "Jacobi diagonal")
            lowest = torch.stack([d.min() for d in diag.values()]).tolist()  # one host read
            for k, low in zip(diag, lowest):
                if not low + damping > 0:
                    raise HypergradInputError(f"Jacobi diagonal[{k!r}] has an entry {low:.3g} (+ damping {damping}); "
                                              "expected a positive diagonal")
        else:
            diag = hutchinson_diagonal(op.matvec, like, self.samples, self.seed)
            top = torch.stack([d.abs().max() for d in diag.values()]).max()
            diag = {k: d.abs().clamp_min(self.floor * top) for k, d in diag.items()}
        inverse = {k: 1.0 / (d.detach() + damping) for k, d in diag.items()}
        return lambda r: {k: r[k] * inverse[k] for k in r}
