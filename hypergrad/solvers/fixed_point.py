"""Richardson fixed-point iteration ``x ← x + γ (b − (A + δI) x)``."""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec, default_check_every
from hypergrad.solvers.info import SolveInfo, tolerance_record, under_transform, unrecorded


def fixed_point(matvec: MatVec, b: tree.Tree, *, lr: float | torch.Tensor, max_iter: int = 100,
                tol: float = 1e-10, atol: float = 0.0, damping: float = 0.0, x0: tree.Tree | None = None,
                check_every: int | None = None) -> tuple[tree.Tree, SolveInfo]:
    """Iterate the map whose fixed point is ``(A + δI)⁻¹ b`` until the residual meets the tolerance.

    From ``x0 = 0`` the k-th iterate equals the Neumann series with k terms; unlike
    :func:`neumann_series` it measures the residual ‖b − (A + δI)x‖ (the matvec it needs anyway)
    and stops on a tolerance. Converges when the eigenvalues of ``A + δI`` lie in (0, 2/γ).

    Args:
        matvec: ``v -> A v``.
        b: right-hand side.
        lr: the step γ.
        max_iter: most iterations.
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance.
        damping: δ added to the diagonal.
        x0: warm start (zero by default).
        check_every: iterations between host reads (default: 1 on CPU, 10 elsewhere).
    """
    check_every = check_every or default_check_every(b)
    x = tree.zeros_like(b) if x0 is None else dict(x0)
    threshold = torch.clamp_min(tol * tree.norm(b), atol)
    trace, active_flags = [], []
    matvecs = 0
    for it in range(max_iter + 1):
        ax = matvec(x) if (x0 is not None or it > 0) else tree.zeros_like(b)
        matvecs += x0 is not None or it > 0
        if damping:
            ax = tree.add(ax, x, damping)
        r = tree.sub(b, ax)
        rnorm = tree.norm(r)
        trace.append(rnorm)
        if it == max_iter or (it % check_every == 0 and not under_transform(b) and bool(rnorm <= threshold)):
            break
        active = rnorm > threshold
        step = torch.as_tensor(lr, dtype=rnorm.dtype, device=rnorm.device)
        x = tree.add(x, r, torch.where(active, step, torch.zeros_like(rnorm)))
        active_flags.append(active)
    if under_transform(b):
        return x, unrecorded("FixedPoint", matvecs)
    info = tolerance_record("FixedPoint", active_flags, trace, threshold, matvecs)
    trace_ = info.residual_trace
    diverged = len(trace_) > 1 and not trace_[-1] <= trace_[0]
    message = info.message + ("; it is diverging: lower lr" if diverged and not info.converged else "")
    return x, info.replace(lr=float(lr), diverged=diverged, message=message)
