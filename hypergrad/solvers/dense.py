"""Exact solve with the Hessian materialised: small problems and reference answers only."""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec
from hypergrad.solvers.info import SolveInfo, under_transform, unrecorded


def dense_matrix(matvec: MatVec, like: tree.Tree) -> torch.Tensor:
    """The n×n matrix of ``matvec`` on the flattened dict, one matvec per basis vector (n products)."""
    flat = tree.flatten(like)
    n = flat.numel()
    cols = []
    for i in range(n):
        e = torch.zeros(n, dtype=flat.dtype, device=flat.device)
        e[i] = 1.0
        cols.append(tree.flatten(matvec(tree.unflatten(e, like))))
    return torch.stack(cols, dim=1)


def dense_solve(matvec: MatVec, b: tree.Tree, *, damping: float = 0.0,
                symmetric: bool = True) -> tuple[tree.Tree, SolveInfo]:
    """``(A + δI)⁻¹ b`` by LU on the dense matrix; the residual is measured on that matrix.

    With ``symmetric=True`` (a Hessian) ``A`` is symmetrised as (A + Aᵀ)/2 first, which only removes
    round-off of the products; a root condition's Jacobian is solved as it is (``symmetric=False``).
    """
    a = dense_matrix(matvec, b)
    if symmetric:
        a = 0.5 * (a + a.T)
    a = a + damping * torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    rhs = tree.flatten(b)
    x = torch.linalg.solve(a, rhs)
    if under_transform(b):
        return tree.unflatten(x, b), unrecorded("Exact", a.shape[0])
    norms = torch.stack([torch.linalg.vector_norm(a @ x - rhs), torch.linalg.vector_norm(rhs),
                         torch.isfinite(x).all().to(x.dtype)])
    residual, scale, finite = norms.double().tolist()  # one host read
    converged = residual <= 1e-6 * max(scale, 1e-300) and bool(finite)
    message = "" if converged else f"Exact: the matrix is singular or ill-conditioned (residual {residual:.3g})"
    return tree.unflatten(x, b), SolveInfo(method="Exact", iterations=1, residual_norm=residual, converged=converged,
                                           residual_trace=(scale, residual), hvps=a.shape[0], message=message)
