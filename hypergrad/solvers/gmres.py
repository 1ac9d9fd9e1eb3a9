"""Restarted GMRES for any nonsingular system ``A x = b`` (no symmetry needed).

The linear system of a root condition, (∂_wF)ᵀ u = v, is not symmetric: CG and MINRES do not apply.
GMRES(m) (Saad & Schultz, 1986) builds an orthonormal Krylov basis by the Arnoldi process and
minimises ‖b − Ax‖ over it; after ``restart`` steps it updates x and starts again from the residual,
so memory stays at m + 1 vectors.
"""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec, default_check_every
from hypergrad.solvers.info import SolveInfo, tolerance_record, under_transform, unrecorded


def gmres(matvec: MatVec, b: tree.Tree, *, restart: int = 20, max_iter: int = 100, tol: float = 1e-10,
          atol: float = 0.0, x0: tree.Tree | None = None, check_every: int | None = None,
          ) -> tuple[tree.Tree, SolveInfo]:
    """Solve ``A x = b`` by GMRES restarted every ``restart`` iterations.

    Iteration k of a cycle costs one matvec and four products with the k-vector basis (classical
    Gram–Schmidt, twice for orthogonality); the residual ‖b − Ax_k‖ is read off the Givens-rotated
    least-squares problem without forming x_k, and x is formed once per cycle. Each restart costs one
    more matvec for the true residual. Without restarts (``restart ≥ max_iter``) it converges in at
    most n iterations for any nonsingular A; restarted, it converges for A whose symmetric part
    (A + Aᵀ)/2 is definite, and may stall otherwise.
    Scalars stay on the device: a converged iteration is frozen with ``torch.where`` and the host reads
    the residual only every ``check_every`` iterations.

    Args:
        matvec: ``v -> A v``.
        b: right-hand side.
        restart: m, the Krylov basis size per cycle (memory: m + 1 vectors like ``b``).
        max_iter: most Arnoldi iterations in all cycles.
        tol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        x0: starting point (zero by default); costs one more matvec.
        check_every: iterations between host reads (default: 1 on CPU, 10 elsewhere).

    Returns:
        ``(x, info)``; ``info.extra["restarts"]`` counts completed cycles before the last.
    """
    check_every = check_every or default_check_every(b)
    transformed = under_transform(b)

    def op(v: torch.Tensor) -> torch.Tensor:
        return tree.flatten(matvec(tree.unflatten(v, b)))

    # The basis is a matrix of flattened vectors: Gram–Schmidt is two matrix-vector products per pass,
    # not one kernel per basis vector. Everything is built functionally (no in-place writes), so that
    # torch.func transforms can trace it.
    rhs = tree.flatten(b)
    matvecs = 0
    if x0 is None:
        x, r = torch.zeros_like(rhs), rhs
    else:
        x = tree.flatten(x0)
        r = rhs - op(x)
        matvecs += 1
    beta = torch.linalg.vector_norm(r)
    tiny = torch.finfo(beta.dtype).tiny
    one, zero = torch.ones_like(beta), torch.zeros_like(beta)
    threshold = torch.clamp_min(tol * torch.linalg.vector_norm(rhs), atol)
    reads = bool(tol or atol) and not transformed
    trace, active_flags = [beta], []
    res = beta
    it, cycles, done = 0, 0, False
    while it < max_iter and not done:
        m = min(restart, max_iter - it)
        basis = (r / torch.where(beta > tiny, beta, one)).unsqueeze(0)
        # Ω = G_j ⋯ G_1, the product of the Givens rotations so far: the rotated right-hand side is
        # β Ω e₁ and the new Hessenberg column is rotated by one product with Ω, not j scalar rotations.
        omega = torch.eye(m + 1, dtype=beta.dtype, device=beta.device)
        cols: list[torch.Tensor] = []
        flags: list[torch.Tensor] = []
        for j in range(m):
            if reads and it + j and (it + j) % check_every == 0 and bool(res <= threshold):
                done = True
                break
            active = res > threshold
            w = op(basis[j])
            matvecs += 1
            h = basis @ w
            w = w - basis.T @ h
            h2 = basis @ w  # a second pass keeps the basis orthogonal to round-off (CGS2)
            w = w - basis.T @ h2
            h_next = torch.linalg.vector_norm(w)
            rotated = omega[: j + 1, : j + 1] @ (h + h2)
            rho = torch.clamp_min(torch.sqrt(rotated[j] ** 2 + h_next**2), tiny)
            # A frozen step is the identity: unit column, no rotation, and a zero coefficient in the solve.
            c = torch.where(active, rotated[j] / rho, one)
            s = torch.where(active, h_next / rho, zero)
            unit = (torch.arange(m, device=beta.device) == j).to(beta.dtype)
            col = torch.cat([rotated[:j], rho.unsqueeze(0), torch.zeros(m - j - 1, dtype=beta.dtype, device=beta.device)])
            cols.append(torch.where(active, col, unit))
            top, bottom = omega[j], omega[j + 1]
            omega = torch.cat([omega[:j], (c * top + s * bottom).unsqueeze(0), (c * bottom - s * top).unsqueeze(0),
                               omega[j + 2:]])
            res = torch.where(active, beta * omega[j + 1, 0].abs(), res)
            trace.append(res)
            flags.append(active)
            basis = torch.cat([basis, (w / torch.where(h_next > tiny, h_next, one)).unsqueeze(0)])
        k = len(cols)
        if k:
            upper = torch.stack(cols, dim=1)[:k]
            g = beta * omega[:k, 0] * torch.stack(flags).to(beta.dtype)
            y = torch.linalg.solve_triangular(upper, g.unsqueeze(1), upper=True).squeeze(1)
            x = x + basis[:k].T @ y
            it += k
            active_flags += flags
        if it < max_iter and not done:
            r = rhs - op(x)
            matvecs += 1
            beta = torch.linalg.vector_norm(r)
            res = beta
            cycles += 1
    solution = tree.unflatten(x, b)
    if transformed:
        return solution, unrecorded("GMRES", matvecs)
    info = tolerance_record("GMRES", active_flags, trace, threshold, matvecs)
    return solution, info.replace(extra={"restarts": cycles, "restart": restart})
