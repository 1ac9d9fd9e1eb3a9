"""Optimality conditions other than a minimum: roots ``F(w, λ) = 0`` and fixed points ``w = T(w, λ)``.

The inner solution of a proximal method (lasso, non-negativity) is a fixed point of a prox-gradient
map; a deep equilibrium layer is ``z* = T(z*, x, θ)``; a KKT system or a Nash equilibrium is a root of
a non-symmetric map. Hand such a condition to :func:`~hypergrad.hypergradient`, :func:`~hypergrad.backward`
or :func:`~hypergrad.implicit` in place of ``inner_loss``, wrapped so the library knows which it is::

    hg.hypergradient(outer_loss, hg.Root(F), params, hparams, ...)          # F(params, hparams, batch) = 0
    hg.implicit(hg.FixedPointMap(T), params, hparams, batch, method=hg.GMRES())

By the implicit function theorem, with L the outer objective,

    dL/dλ = ∂_λL − (∂_λF)ᵀ u,      (∂_wF)ᵀ u = ∂_wL                  (root)
    dL/dλ = ∂_λL + (∂_λT)ᵀ u,      (I − ∂_wT)ᵀ u = ∂_wL              (fixed point, F = T − w)

each product one VJP of F (or T): a single backward pass, never a double backward. The system is not
symmetric, so the solvers are GMRES, BiCGSTAB, CG on the normal equations, the fixed-point iteration
``u ← (∂_wT)ᵀ u + ∂_wL`` and the dense LU; ``inner_loss`` is the special case F = ∂_w f, with its
symmetric solvers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hypergrad import methods as m
from hypergrad import tree
from hypergrad.distributed import Reduce, reduced
from hypergrad.errors import HypergradInputError
from hypergrad.linearization import Map, MapLinearization
from hypergrad.operator import LinearOperator
from hypergrad.solvers import SolveInfo
from hypergrad.user_code import call


@dataclass(frozen=True)
class Condition:
    """An optimality condition given by a map ``fn(params, hparams, batch) -> dict like params``."""

    fn: Map

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise HypergradInputError(f"{type(self).__name__}(fn={self.fn!r}): expected a callable "
                                      "(params, hparams, batch) -> dict like params")

    def __call__(self, params: dict[str, torch.Tensor], hparams: dict[str, torch.Tensor], batch: Any
                 ) -> dict[str, torch.Tensor]:
        return self.fn(params, hparams, batch)


@dataclass(frozen=True)
class Root(Condition):
    """The inner solution is a root: ``fn(params, hparams, batch)`` returns a dict like ``params``, zero there.

    Example (a non-negative least squares solution is a root of the projected-gradient residual):
        >>> nnls = hg.Root(lambda p, h, b: {"w": p["w"] - (p["w"] - grad_f(p, h, b)).clamp_min(0)})
    """


@dataclass(frozen=True)
class FixedPointMap(Condition):
    """The inner solution is a fixed point ``params = fn(params, hparams, batch)`` (the root of T − w).

    Example (a deep equilibrium layer z* = tanh(W z* + U x + b), the layer's weights as hparams):
        >>> deq = hg.FixedPointMap(lambda p, h, x: {"z": torch.tanh(p["z"] @ h["W"].T + x @ h["U"].T + h["b"])})
    """


def default_method(inner: object) -> m.GMRES | m.CG:
    """The method used when none is given: GMRES for a condition (``docs/benchmarks.md``), CG for a loss."""
    return m.GMRES() if isinstance(inner, Condition) else m.CG()


def check_condition_method(method: object, caller: str = "") -> None:
    """One-line :class:`HypergradInputError` for a method that needs a symmetric system (or a loss)."""
    if not isinstance(method, m.CONDITION_METHODS):
        names = ", ".join(c.__name__ + "()" for c in m.CONDITION_METHODS)
        where = f"{caller}(method={method!r})" if caller else f"method={method!r}"
        raise HypergradInputError(f"{where} needs an inner loss (a symmetric Hessian system); a root or fixed-point "
                                  f"condition's Jacobian is not symmetric: use one of {names}")


def condition_system(method: Any, condition: Condition, params: dict[str, torch.Tensor],
                     hparams: dict[str, torch.Tensor], draw_inner: Callable[[], Any], reduce: Reduce | None = None
                     ) -> tuple[LinearOperator, Callable[[dict], dict], Callable[[SolveInfo], SolveInfo]]:
    """The adjoint operator of ``condition`` at (w, λ), its correction, and the counts for the record.

    For a root A = (∂_wF)ᵀ and correction = (∂_λF)ᵀ u; for a fixed point A = I − (∂_wT)ᵀ and
    correction = −(∂_λT)ᵀ u, so that dL/dλ = ∂_λL − correction. One inner batch serves the solve and
    the correction. ``info.hvps`` counts the Jacobian products (VJPs and JVPs; ``info.extra`` splits
    them). With ``reduce`` (data-parallel), each Jacobian product is averaged over processes.
    """
    check_condition_method(method)
    fixed = isinstance(condition, FixedPointMap)
    batch = draw_inner()
    lin = MapLinearization(condition.fn, params, hparams, batch, mode=method.hvp, who="FixedPointMap" if fixed else "Root")
    vjp = reduced(lin.vjp, reduce, "a Jacobian product (VJP)")
    jvp = reduced(lin.jvp, reduce, "a Jacobian product (JVP)")

    def matvec(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return tree.sub(u, vjp(u)) if fixed else vjp(u)

    def rmatvec(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return tree.sub(u, jvp(u)) if fixed else jvp(u)

    def correction(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = lin.vjp_hparams(u)
        return tree.scale(c, -1.0) if fixed else c

    def record(info: SolveInfo) -> SolveInfo:
        return info.replace(hvps=lin.vjps + lin.jvps, mixed_products=1, gradients=1, inner_batches=1,
                            extra={**info.extra, "vjps": lin.vjps, "jvps": lin.jvps})

    def point(fn: Callable[..., Any], who: str) -> Any:
        return call(fn, who, "preparing the linear solve", params, hparams, batch)

    return (LinearOperator(matvec, rmatvec, "fixed_point" if fixed else "root", point=point), correction, record)
