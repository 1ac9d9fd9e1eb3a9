"""Conjugate gradient on the normal equations: the robust fallback for non-symmetric systems."""

from __future__ import annotations

from hypergrad import tree
from hypergrad.solvers.cg import MatVec, conjugate_gradient
from hypergrad.solvers.info import SolveInfo


def normal_cg(matvec: MatVec, rmatvec: MatVec, b: tree.Tree, *, max_iter: int = 100, tol: float = 1e-10,
              atol: float = 0.0, check_every: int | None = None) -> tuple[tree.Tree, SolveInfo]:
    """Solve ``A x = b`` as ``A Aᵀ y = b``, ``x = Aᵀ y`` by conjugate gradient (CGNE, Craig's method).

    A Aᵀ is symmetric positive definite for any nonsingular A, so CG always converges, at the rate of
    the condition number κ(A)² instead of κ(A): the fallback when GMRES stalls or BiCGSTAB breaks
    down. CG's residual b − A Aᵀ y is the true residual b − A x of the original system. Cost per
    iteration: one product by A and one by Aᵀ, plus one more by Aᵀ for x.

    Args:
        matvec: ``v -> A v``.
        rmatvec: ``v -> Aᵀ v``.
        b: right-hand side.
        max_iter: most CG iterations.
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        check_every: iterations between host reads (default: 1 on CPU, 10 elsewhere).
    """
    y, info = conjugate_gradient(lambda z: matvec(rmatvec(z)), b, max_iter=max_iter, tol=tol, atol=atol,
                                 check_every=check_every)
    x = rmatvec(y)
    message = info.message.replace("CG stopped", "NormalCG stopped", 1)
    if info.negative_curvature:
        message = "NormalCG: A Aᵀ is singular along a search direction, so A (the condition's Jacobian) is singular"
    return x, info.replace(method="NormalCG", hvps=2 * info.hvps + 1, negative_curvature=False, message=message,
                           extra={"matvecs": info.hvps, "rmatvecs": info.hvps + 1})
