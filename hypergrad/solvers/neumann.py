"""Truncated Neumann series for ``A⁻¹ b`` and the power iteration that picks its step."""

from __future__ import annotations

import warnings

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec
from hypergrad.solvers.info import SolveInfo, to_floats, under_transform, unrecorded


def largest_eigenvalue(matvec: MatVec, like: tree.Tree, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Power-iteration estimate of the largest |eigenvalue| of symmetric ``A``, as a 0-d tensor.

    The start vector comes from a private generator, so the estimate does not move the global RNG.
    """
    gen = torch.Generator(device=next(iter(like.values())).device).manual_seed(seed)
    v = {k: torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) for k, x in like.items()}
    v = tree.scale(v, 1.0 / tree.norm(v))
    first = next(iter(like.values()))
    lam = torch.zeros((), dtype=first.dtype, device=first.device)
    for _ in range(iters):
        av = matvec(v)
        lam = tree.dot(v, av).abs()
        v = tree.scale(av, 1.0 / tree.norm(av).clamp_min(torch.finfo(lam.dtype).tiny))
    return lam


def neumann_series(matvec: MatVec, b: tree.Tree, *, terms: int, lr: float | torch.Tensor,
                   name: str = "Neumann", warn_growth: float = 2.0) -> tuple[tree.Tree, SolveInfo]:
    """``A⁻¹ b ≈ γ Σ_{k=0..K} (I − γA)^k b`` with K = ``terms`` matvecs.

    The series converges when every eigenvalue of ``A`` lies in (0, 2/γ). Each call of ``matvec``
    may use a different estimate of ``A`` (a fresh mini-batch): the stochastic Neumann estimator.
    When the last term is larger than the first the series is diverging: ``info.diverged`` is set
    and ``info.message`` says why. A :class:`RuntimeWarning` is raised only when the last term is more
    than ``warn_growth`` times the first: with a few terms on different mini-batches, growth of a few
    percent is sampling noise or mild negative curvature, and one warning per step would drown the log.

    Args:
        matvec: ``v -> A v``.
        b: right-hand side.
        terms: K ≥ 0, the highest power; K = 0 returns γ b.
        lr: the step γ > 0.
        name: estimator name for the record.
        warn_growth: ratio of the last to the first term norm above which to warn.
    """
    p = dict(b)
    acc = dict(b)
    norms = [tree.norm(p)]
    for _ in range(terms):
        p = tree.add(p, matvec(p), -lr)
        acc = tree.add(acc, p)
        norms.append(tree.norm(p))
    if under_transform(b):
        return tree.scale(acc, lr), unrecorded(name, terms)
    trace = to_floats(norms)
    # NaN terms come from NaN input, not from the step; the caller reports those.
    growth = trace[-1] / trace[0] if trace[0] > 0 else 1.0
    diverged = terms > 0 and growth > 1.0
    message = ""
    if diverged:
        message = (f"{name}: series terms grow from {trace[0]:.3g} to {trace[-1]:.3g}: the step lr={float(lr):.3g} "
                   "exceeds 2/λ_max of the Hessian, or the Hessian has negative curvature; lower lr or pass lr='auto'")
        if growth > warn_growth:
            warnings.warn(message, RuntimeWarning, stacklevel=4)
    return tree.scale(acc, lr), SolveInfo(method=name, iterations=terms, residual_trace=trace, hvps=terms,
                                          lr=float(lr), diverged=diverged, message=message, extra={"growth": growth})
