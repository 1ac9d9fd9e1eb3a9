"""Outer optimisers on ijcnn1, each driving the library's hypergradient, and the levers that speed it up.

An :class:`Oracle` returns h(x) and ∇h(x) for the outer optimiser: it solves the inner problem by
Newton (warm: from the last z*), then asks ``hg.hypergradient`` for ∇h (warm: the linear solve
starts from the last adjoint; the method: plain CG, CG with the exact Jacobi preconditioner, or the
dense solve ``hg.Auto`` picks for 22 variables). :func:`run` hands the oracle to L-BFGS-B with the
box (scipy), or to projected Adam or SGD, and records (seconds, x) at every outer iteration; the
curve's h(x) is evaluated afterwards by the exact evaluator, outside the timed loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.optimize
import torch

import hypergrad as hg
from applications.hpo.ijcnn1.problem import BOX, Problem, hessian_diagonal, inner_loss, newton, outer_loss

Solve = Literal["cg", "jacobi", "newton", "dense"]
Outer = Literal["lbfgsb", "adam", "sgd"]


@dataclass(frozen=True)
class Levers:
    """What the oracle reuses and how it solves: each on/off for the side-by-side runs.

    Attributes:
        warm_inner: Newton starts from the previous call's z* (else from zero).
        warm_adjoint: the hypergradient's linear solve starts from the previous adjoint.
        solve: ``"cg"`` (plain), ``"jacobi"`` (CG with the exact diagonal of the Hessian),
            ``"newton"`` (CG preconditioned by the Hessian Newton factored at its last step, a user
            preconditioner; Jacobi when Newton took no step) or ``"dense"`` (``hg.Auto``: 22 variables
            are below its size, so the LU of the Hessian from 22 products).
    """

    warm_inner: bool = True
    warm_adjoint: bool = True
    solve: Solve = "jacobi"

    def method(self, tol: float, factor: torch.Tensor | None = None) -> hg.CG | hg.Auto:
        """The library method; ``factor`` is Newton's last Cholesky factor, if it took a step."""
        if self.solve == "dense":
            return hg.Auto()
        if self.solve == "newton" and factor is not None:
            def newton_hessian(r: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                return {"z": torch.cholesky_solve(r["z"][:, None], factor)[:, 0]}

            return hg.CG(max_iter=1000, tol=tol, preconditioner=newton_hessian)
        pre = hg.Jacobi(diagonal=hessian_diagonal) if self.solve in ("jacobi", "newton") else None
        return hg.CG(max_iter=1000, tol=tol, preconditioner=pre)

    @property
    def label(self) -> str:
        parts = [{"cg": "CG", "jacobi": "CG+Jacobi", "newton": "CG+Newton Hessian", "dense": "dense"}[self.solve]]
        parts.append("warm inner" if self.warm_inner else "cold inner")
        if self.solve != "dense":
            parts.append("warm adjoint" if self.warm_adjoint else "cold adjoint")
        return ", ".join(parts)


@dataclass
class Oracle:
    """``x -> (h(x), ∇h(x))`` through ``hg.hypergradient``, keeping z* and the adjoint between calls."""

    problem: Problem
    levers: Levers = field(default_factory=Levers)
    inner_tol: float = 1e-10
    solve_tol: float = 1e-10
    calls: int = 0
    products: int = 0
    newton_iterations: int = 0
    _z: torch.Tensor | None = None
    _adjoint: dict[str, torch.Tensor] | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x_t = torch.from_numpy(np.asarray(x, dtype=np.float64).copy())
        start = self._z if (self.levers.warm_inner and self._z is not None) else torch.zeros(self.problem.dim,
                                                                                            dtype=torch.float64)
        z, info = newton(self.problem.train, x_t, start, tol=self.inner_tol)
        res = hg.hypergradient(outer_loss, inner_loss, {"z": z}, {"x": x_t}, outer_batch=self.problem.test,
                               inner_batch=self.problem.train, method=self.levers.method(self.solve_tol, info.factor),
                               warm_start=self._adjoint if self.levers.warm_adjoint else None)
        self._z, self._adjoint = z, res.adjoint
        self.calls += 1
        self.products += res.info.hvps
        self.newton_iterations += info.iterations
        return float(res.outer_value), res.grads["x"].numpy()

    def reset(self) -> None:
        """Forget z*, the adjoint and the counts (after a warm-up call)."""
        self._z, self._adjoint = None, None
        self.calls = self.products = self.newton_iterations = 0


@dataclass
class Trace:
    """Outer iterates against wall time and this process's CPU time (the first entry is the start, at 0).

    On a loaded machine the CPU seconds of a one-thread run are what its wall time would be alone.
    """

    label: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    xs: list[np.ndarray] = field(default_factory=list)
    note: str = ""


def run(oracle: Any, x0: np.ndarray, outer: Outer, budget: float, label: str, lr: float = 0.1,
        max_iter: int = 100_000, clock: Literal["wall", "cpu"] = "wall") -> Trace:
    """Minimise h over the box from ``x0`` for ``budget`` seconds of ``clock`` (or until the optimiser stops).

    ``oracle(x) -> (h, ∇h)``. L-BFGS-B (scipy, the box as bounds, its tolerances set to zero so that
    only the budget or a stalled line search stops it); projected Adam (β = 0.9, 0.999) and SGD with
    step ``lr``. Records every outer iterate with the seconds since the start. The oracle is called
    once at ``x0`` and reset before the clock starts (``oracle.reset()``), as benchopt runs each solver
    once before timing it: imports, first-call allocations and jax's compilation are not timed.
    """
    trace = Trace(label)
    lower, upper = BOX
    x0 = np.clip(np.asarray(x0, dtype=np.float64), lower, upper)
    oracle(x0)
    oracle.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    trace.seconds.append(0.0)
    trace.cpu_seconds.append(0.0)
    trace.xs.append(x0.copy())

    def record(x: np.ndarray) -> bool:
        trace.seconds.append(time.perf_counter() - t0)
        trace.cpu_seconds.append(time.process_time() - c0)
        trace.xs.append(np.array(x, dtype=np.float64))
        return (trace.seconds if clock == "wall" else trace.cpu_seconds)[-1] >= budget

    if outer == "lbfgsb":
        def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
            if record(intermediate_result.x):
                raise StopIteration

        result = scipy.optimize.minimize(oracle, x0, jac=True, method="L-BFGS-B", bounds=[BOX] * len(x0),
                                         callback=callback, options={"maxiter": max_iter, "ftol": 0.0, "gtol": 0.0,
                                                                     "maxcor": 20})
        trace.note = str(result.message)
        return trace
    x, m, v = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    for k in range(1, max_iter + 1):
        _, g = oracle(x)
        if outer == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            step = lr * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
        else:
            step = lr * g
        x = np.clip(x - step, lower, upper)
        if record(x):
            break
    return trace
