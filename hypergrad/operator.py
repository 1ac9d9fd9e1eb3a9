"""The matrix of a hypergradient's linear system, given by its products: what a method solves.

An estimator chooses the operator — the Hessian ∂²_{ww} f of an inner loss, the transposed Jacobian
(∂_wF)ᵀ of a root condition, I − (∂_wT)ᵀ of a fixed-point map — and hands it to the method's
``solve(operator, b, x0)``; the method chooses how to solve ``A v = b``. A new solver is one method
class; a new kind of condition is one operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hypergrad import tree
from hypergrad.errors import HypergradInputError

MatVec = Callable[[tree.Tree], tree.Tree]
Kind = Literal["hessian", "root", "fixed_point"]


@dataclass(frozen=True)
class LinearOperator:
    """``A`` of the adjoint system ``A v = b``, by its products on parameter dicts.

    Attributes:
        matvec: ``v -> A v``.
        rmatvec: ``v -> Aᵀ v`` (the same function as ``matvec`` when ``symmetric``).
        kind: ``"hessian"`` (A = ∂²_{ww} f, symmetric), ``"root"`` (A = (∂_wF)ᵀ) or ``"fixed_point"``
            (A = I − (∂_wT)ᵀ, whose natural Richardson step is 1: u ← (∂_wT)ᵀu + b).
        sample: ``v -> A_B v`` with ``A_B`` evaluated on a fresh inner batch at every call (the
            stochastic Neumann series), or None where the operator has no batches to draw.
        point: ``(fn, who) -> fn(params, hparams, batch)``, a user function evaluated where the operator
            is linearised (a user-supplied diagonal), ``who`` naming it in errors; None where there is
            no single point (a stochastic series sharing its batches).
    """

    matvec: MatVec
    rmatvec: MatVec
    kind: Kind = "hessian"
    sample: MatVec | None = None
    point: Callable[[Callable[..., Any], str], Any] | None = None

    @property
    def symmetric(self) -> bool:
        return self.kind == "hessian"

    def at_point(self, fn: Callable[..., Any], who: str) -> Any:
        if self.point is None:
            raise HypergradInputError(f"{who}: this operator has no single linearisation point (its batches are drawn "
                                      "per product)")
        return self.point(fn, who)

    def checked(self, before: Callable[[], None]) -> LinearOperator:
        """The same operator with ``before()`` called ahead of every product (e.g. a deadline that raises)."""
        def guard(product: MatVec | None) -> MatVec | None:
            if product is None:
                return None

            def guarded(v: tree.Tree) -> tree.Tree:
                before()
                return product(v)
            return guarded

        matvec = guard(self.matvec)
        rmatvec = matvec if self.rmatvec is self.matvec else guard(self.rmatvec)
        assert matvec is not None and rmatvec is not None
        return dataclasses.replace(self, matvec=matvec, rmatvec=rmatvec, sample=guard(self.sample))
