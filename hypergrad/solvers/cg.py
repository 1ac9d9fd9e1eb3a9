"""Conjugate gradient for symmetric positive-definite systems ``(H + δI) x = b``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hypergrad import tree
from hypergrad.solvers.info import SolveInfo, tolerance_record, under_transform, unrecorded

MatVec = Callable[[tree.Tree], tree.Tree]


def default_check_every(b: tree.Tree) -> int:
    """How often a solver reads its residual on the host: every step on CPU, where a read is free;
    every 10 steps on accelerators, where each read stalls the device queue."""
    return 1 if next(iter(b.values())).device.type == "cpu" else 10


def conjugate_gradient(matvec: MatVec, b: tree.Tree, *, max_iter: int = 100, tol: float = 1e-10,
                       atol: float = 0.0, damping: float = 0.0, x0: tree.Tree | None = None,
                       preconditioner: MatVec | None = None, check_every: int | None = None,
                       ) -> tuple[tree.Tree, SolveInfo]:
    """Solve ``(A + δI) x = b`` by (preconditioned) conjugate gradient.

    Stops when ‖b − (A + δI)x‖ ≤ max(tol·‖b‖, atol). Between host reads of the residual (every
    ``check_every`` iterations) a converged iteration is frozen with ``torch.where`` instead of a
    branch, so the loop never waits for the device.

    Args:
        matvec: ``v -> A v`` on parameter dicts, ``A`` symmetric.
        b: right-hand side.
        max_iter: most iterations (one matvec each).
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        damping: δ ≥ 0 added to the diagonal.
        x0: starting point (zero by default); a warm start costs one more matvec.
        preconditioner: ``r -> M⁻¹ r`` with ``M`` symmetric positive definite, or ``None``.
        check_every: iterations between host reads of the residual (default: 1 on CPU, 10 elsewhere).

    Returns:
        ``(x, info)``; ``info.negative_curvature`` reports a direction with ``pᵀAp ≤ 0``.
    """
    def op(v: tree.Tree) -> tree.Tree:
        out = matvec(v)
        return tree.add(out, v, damping) if damping else out

    check_every = check_every or default_check_every(b)
    matvecs = 0
    if x0 is None:
        x, r = tree.zeros_like(b), dict(b)
    else:
        x = dict(x0)
        r = tree.sub(b, op(x))
        matvecs += 1
    threshold = torch.clamp_min(tol * tree.norm(b), atol)
    # A residual of exactly zero is the only stop when both tolerances are zero: skip the host reads.
    reads = bool(tol or atol)

    def precond_dot(r: tree.Tree) -> tuple[tree.Tree, torch.Tensor, torch.Tensor]:
        """(z = M⁻¹r, rᵀz, ‖r‖); without a preconditioner rᵀz = ‖r‖², one reduction instead of two."""
        if preconditioner is None:
            rr = tree.dot(r, r)
            return r, rr, rr.sqrt()
        z = preconditioner(r)
        return z, tree.dot(r, z), tree.norm(r)

    z, rz, rnorm = precond_dot(r)
    p = z
    trace = [rnorm]
    active_flags = []
    neg_curv = torch.zeros((), dtype=torch.bool, device=rnorm.device)
    for it in range(max_iter):
        if reads and it and it % check_every == 0 and not under_transform(b) and bool(rnorm <= threshold):
            break
        active = rnorm > threshold
        ap = op(p)
        matvecs += 1
        pap = tree.dot(p, ap)
        neg_curv = neg_curv | (active & (pap <= 0))
        alpha = torch.where(active, rz / pap, torch.zeros_like(rz))
        x = tree.add(x, p, alpha)
        r = tree.add(r, ap, -alpha)
        z, rz_new, rnorm = precond_dot(r)
        beta = torch.where(active, rz_new / rz, torch.zeros_like(rz))
        p = tree.add(z, p, beta)
        rz = torch.where(active, rz_new, rz)
        trace.append(rnorm)
        active_flags.append(active)
    if under_transform(b):
        return x, unrecorded("CG", matvecs)
    info = tolerance_record("CG", active_flags, trace, threshold, matvecs, negative_curvature=neg_curv)
    # CG's residual is not monotone; an order of magnitude above the start means it has lost its way.
    diverged = info.residual_trace[0] > 0 and not info.residual_norm <= 10 * info.residual_trace[0]
    if info.negative_curvature:
        return x, info.replace(converged=False, diverged=diverged, message=(
            "CG met negative curvature: the Hessian (plus damping) is not positive definite; use MINRES or more damping"))
    return x, info.replace(diverged=diverged)
