"""BiCGSTAB for any nonsingular system ``A x = b`` with short recurrences."""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec, default_check_every
from hypergrad.solvers.info import SolveInfo, tolerance_record, under_transform, unrecorded


def bicgstab(matvec: MatVec, b: tree.Tree, *, max_iter: int = 100, tol: float = 1e-10, atol: float = 0.0,
             x0: tree.Tree | None = None, check_every: int | None = None) -> tuple[tree.Tree, SolveInfo]:
    """Solve ``A x = b`` by the stabilised bi-conjugate gradient method (van der Vorst, 1992).

    Each iteration costs two matvecs and keeps six vectors, whatever the iteration count (GMRES keeps
    one per iteration of its cycle). Its residual is not monotone, and it breaks down when ρ = r̂ᵀr or
    ω vanishes before convergence (``info.extra["breakdown"]``); GMRES is the robust alternative. The
    recorded residual is the recurrence's ‖r_k‖, equal to ‖b − Ax_k‖ in exact arithmetic. Scalars stay on
    the device; the host reads the residual every ``check_every`` iterations.

    Args:
        matvec: ``v -> A v``.
        b: right-hand side.
        max_iter: most iterations (two matvecs each).
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        x0: starting point (zero by default); costs one more matvec.
        check_every: iterations between host reads (default: 1 on CPU, 10 elsewhere).
    """
    check_every = check_every or default_check_every(b)
    transformed = under_transform(b)
    matvecs = 0
    if x0 is None:
        x, r = tree.zeros_like(b), dict(b)
    else:
        x = dict(x0)
        r = tree.sub(b, matvec(x))
        matvecs += 1
    r_hat = dict(r)
    rnorm = tree.norm(r)
    tiny = torch.finfo(rnorm.dtype).tiny
    one, zero = torch.ones_like(rnorm), torch.zeros_like(rnorm)
    threshold = torch.clamp_min(tol * tree.norm(b), atol)
    reads = bool(tol or atol) and not transformed
    rho = alpha = omega = one
    p, v = tree.zeros_like(b), tree.zeros_like(b)
    broken = torch.zeros((), dtype=torch.bool, device=rnorm.device)
    trace, active_flags = [rnorm], []

    def safe(d: torch.Tensor) -> torch.Tensor:
        return torch.where(d.abs() > tiny, d, one)

    for it in range(max_iter):
        if reads and it and it % check_every == 0 and bool((rnorm <= threshold) | broken):
            break
        active = (rnorm > threshold) & ~broken
        rho_new = tree.dot(r_hat, r)
        beta = (rho_new / safe(rho)) * (alpha / safe(omega))
        p_new = tree.add(r, tree.add(p, v, -omega), beta)
        v_new = matvec(p_new)
        alpha_new = rho_new / safe(tree.dot(r_hat, v_new))
        s = tree.add(r, v_new, -alpha_new)
        t = matvec(s)
        matvecs += 2
        tt = tree.dot(t, t)
        omega_new = torch.where(tt > tiny, tree.dot(t, s) / safe(tt), zero)
        r_new = tree.add(s, t, -omega_new)
        rn = tree.norm(r_new)
        broken = broken | (active & (rn > threshold) & ((rho_new.abs() <= tiny) | (omega_new == 0)))
        x = tree.select(active, tree.add(tree.add(x, p_new, alpha_new), s, omega_new), x)
        r = tree.select(active, r_new, r)
        p = tree.select(active, p_new, p)
        v = tree.select(active, v_new, v)
        rho = torch.where(active, rho_new, rho)
        alpha = torch.where(active, alpha_new, alpha)
        omega = torch.where(active, omega_new, omega)
        rnorm = torch.where(active, rn, rnorm)
        trace.append(rnorm)
        active_flags.append(active)
    if transformed:
        return x, unrecorded("BiCGSTAB", matvecs)
    info = tolerance_record("BiCGSTAB", active_flags, trace, threshold, matvecs)
    if bool(broken) and not info.converged:
        return x, info.replace(extra={"breakdown": True}, message=(
            f"BiCGSTAB broke down after {info.iterations} iterations (rho or omega vanished) with residual "
            f"{info.residual_norm:.3g}; use GMRES"))
    return x, info.replace(extra={"breakdown": False})
