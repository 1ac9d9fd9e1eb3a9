"""The diagnostics record every solve returns beside its solution."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hypergrad.tree import under_transform  # noqa: F401  (re-exported for the solvers)


@dataclass(frozen=True)
class SolveInfo:
    """How a hypergradient's linear solve (or its absence) went.

    Attributes:
        method: the estimator's name (``"CG"``, ``"StochasticNeumann"``, ...).
        iterations: solver iterations that changed the solution (series terms for Neumann, inner steps
            for unrolled differentiation, 0 for estimators that solve nothing).
        residual_norm: final ‖(H + δI) v − ∂_wF‖ (exact or the solver's recurrence estimate);
            ``nan`` where the method does not measure it.
        converged: ``True`` when the residual met the tolerance, ``False`` when it did not (or the
            iteration diverged), ``None`` where the method has no tolerance (Neumann series,
            first-order, one-step and unrolled estimators).
        residual_trace: residual norm after each iteration (term norms ‖(I − γH)^k b‖ for Neumann).
        hvps: Hessian-vector products computed.
        mixed_products: mixed products (∂²_{λw} f)ᵀ v computed.
        gradients: full gradient evaluations (outer and inner) besides the products above.
        inner_batches: inner batches drawn (more than one only for stochastic estimators).
        lr: the step γ used by Neumann-type solvers (after ``lr="auto"``), else ``nan``.
        diverged: the iteration grew instead of shrinking (Neumann terms growing, CG or MINRES residual
            above its start).
        negative_curvature: CG met a direction with pᵀ(H + δI)p ≤ 0, so H + δI is not positive definite.
        seconds: wall time of the whole hypergradient.
        message: a sentence for the user when something went wrong, else ``""``.
    """

    method: str
    iterations: int = 0
    residual_norm: float = math.nan
    converged: bool | None = None
    residual_trace: tuple[float, ...] = ()
    hvps: int = 0
    mixed_products: int = 0
    gradients: int = 0
    inner_batches: int = 1
    lr: float = math.nan
    diverged: bool = False
    negative_curvature: bool = False
    seconds: float = 0.0
    message: str = ""
    extra: dict = field(default_factory=dict)

    def replace(self, **changes: Any) -> SolveInfo:
        return dataclasses.replace(self, **changes)


def to_floats(values: list[torch.Tensor]) -> tuple[float, ...]:
    """One host synchronisation for a whole trace of 0-d tensors."""
    if not values:
        return ()
    return tuple(float(x) for x in torch.stack(values).double().tolist())


def tolerance_record(method: str, active_flags: list[torch.Tensor], trace: list[torch.Tensor],
                     threshold: torch.Tensor, matvecs: int, negative_curvature: torch.Tensor | None = None) -> SolveInfo:
    """The record of an iterative solve with a tolerance, from its per-iteration device tensors, all of
    them read to the host in one synchronisation.

    Args:
        method: solver name.
        active_flags: per loop iteration, whether it changed the solution (not yet converged).
        trace: residual norm before the first and after each iteration.
        threshold: the residual norm that counts as converged.
        matvecs: products computed, frozen iterations included.
        negative_curvature: a 0-d boolean, set when the solver met a direction of non-positive curvature.
    """
    first = trace[0]
    flag = torch.zeros_like(first) if negative_curvature is None else negative_curvature.to(first.dtype)
    count = torch.stack(active_flags).sum().to(first.dtype) if active_flags else torch.zeros_like(first)
    iterations, limit, curved, *values = torch.stack([count, threshold.to(first.dtype), flag, *trace]).double().tolist()
    iterations = int(iterations)
    residuals = tuple(values[: iterations + 1])
    final = residuals[-1]
    converged = bool(final <= limit)
    message = "" if converged else (
        f"{method} stopped after {iterations} iterations with residual {final:.3g} > tolerance {limit:.3g}")
    return SolveInfo(method=method, iterations=iterations, residual_norm=final, converged=converged,
                     residual_trace=residuals, hvps=matvecs, negative_curvature=bool(curved), message=message)


def unrecorded(method: str, matvecs: int) -> SolveInfo:
    """The record a solver returns under a ``torch.func`` transform: counts only."""
    return SolveInfo(method=method, hvps=matvecs, message="residuals are not recorded under torch.func transforms")
