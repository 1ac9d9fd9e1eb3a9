"""MINRES for symmetric, possibly indefinite systems ``(H + δI) x = b``.

Away from a minimum (a non-convex inner problem stopped early, as in architecture search) the
Hessian has negative eigenvalues and conjugate gradient can break down; MINRES (Paige & Saunders,
1975) minimises ‖b − Ax‖ over the Krylov space instead and needs only symmetry.
"""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec, default_check_every
from hypergrad.solvers.info import SolveInfo, tolerance_record, under_transform, unrecorded


def minres(matvec: MatVec, b: tree.Tree, *, max_iter: int = 100, tol: float = 1e-10, atol: float = 0.0,
           damping: float = 0.0, check_every: int | None = None) -> tuple[tree.Tree, SolveInfo]:
    """Solve ``(A + δI) x = b`` for symmetric ``A`` by MINRES, starting from zero.

    The residual norm is the recurrence's estimate ``φ̄_k`` = ‖b − (A + δI)x_k‖ in exact arithmetic.
    Stops when it is at most max(tol·‖b‖, atol). Scalars stay on the device as 0-d tensors, and a
    converged iteration is frozen with ``torch.where``, so the loop reads the host only every
    ``check_every`` iterations.

    Args:
        matvec: ``v -> A v``, ``A`` symmetric.
        b: right-hand side.
        max_iter: most iterations (one matvec each).
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        damping: δ added to the diagonal (any sign keeps the system symmetric).
        check_every: iterations between host reads (default: 1 on CPU, 10 elsewhere).
    """
    check_every = check_every or default_check_every(b)
    beta1 = tree.norm(b)
    zero = torch.zeros_like(beta1)
    one = torch.ones_like(beta1)
    tiny = torch.finfo(beta1.dtype).tiny
    threshold = torch.clamp_min(tol * beta1, atol)
    x = tree.zeros_like(b)
    w, w2 = tree.zeros_like(b), tree.zeros_like(b)
    r1, r2, y = dict(b), dict(b), dict(b)
    beta, oldb = beta1, zero
    dbar, epsln, phibar = zero, zero, beta1
    cs, sn = -one, zero
    trace, active_flags = [beta1], []
    matvecs = 0
    for it in range(max_iter):
        if it and it % check_every == 0 and not under_transform(b) and bool(phibar <= threshold):
            break
        active = (phibar > threshold) & (beta > tiny)
        v = tree.scale(y, 1.0 / torch.where(beta > tiny, beta, one))
        y = matvec(v)
        matvecs += 1
        if damping:
            y = tree.add(y, v, damping)
        if it > 0:
            y = tree.add(y, r1, -beta / torch.where(oldb > tiny, oldb, one))
        alfa = tree.dot(v, y)
        y = tree.add(y, r2, -alfa / torch.where(beta > tiny, beta, one))
        r1, r2 = r2, y
        oldb, beta_new = beta, tree.norm(y)
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta_new
        dbar = -cs * beta_new
        gamma = torch.clamp_min(torch.sqrt(gbar**2 + beta_new**2), tiny)
        cs_new, sn_new = gbar / gamma, beta_new / gamma
        phi = cs_new * phibar
        w1, w2 = w2, w
        w = tree.scale(tree.add(tree.add(v, w1, -oldeps), w2, -delta), 1.0 / gamma)
        # A select, not a multiplication by zero: the Lanczos vectors of a frozen iteration may overflow.
        x = {k: torch.where(active, x[k] + phi * w[k], x[k]) for k in x}
        # Frozen iterations keep the recurrence's state, so a later host read sees the converged one.
        phibar = torch.where(active, sn_new * phibar, phibar)
        cs = torch.where(active, cs_new, cs)
        sn = torch.where(active, sn_new, sn)
        beta = torch.where(active, beta_new, beta)
        trace.append(phibar)
        active_flags.append(active)
    if under_transform(b):
        return x, unrecorded("MINRES", matvecs)
    return x, tolerance_record("MINRES", active_flags, trace, threshold, matvecs)
