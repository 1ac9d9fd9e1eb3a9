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

    Iteration k of a cycle costs one matvec and k + 1 inner products (modified Gram–Schmidt); the
    residual ‖b − Ax_k‖ is read off the Givens-rotated least-squares problem without forming x_k, and x
    is formed once per cycle. Each restart costs one more matvec for the true residual. Without restarts
    (``restart ≥ max_iter``) it converges in at most n iterations for any nonsingular A; restarted,
    it converges for A whose symmetric part (A + Aᵀ)/2 is definite, and may stall otherwise.
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
    matvecs = 0
    if x0 is None:
        x, r = tree.zeros_like(b), dict(b)
    else:
        x = dict(x0)
        r = tree.sub(b, matvec(x))
        matvecs += 1
    beta = tree.norm(r)
    tiny = torch.finfo(beta.dtype).tiny
    one = torch.ones_like(beta)
    threshold = torch.clamp_min(tol * tree.norm(b), atol)
    reads = bool(tol or atol) and not transformed
    trace, active_flags = [beta], []
    res = beta
    it, cycles, done = 0, 0, False
    while it < max_iter and not done:
        basis = [tree.scale(r, 1.0 / torch.where(beta > tiny, beta, one))]
        g = [beta]  # the rotated right-hand side β e₁ of the least-squares problem
        cols: list[list[torch.Tensor]] = []
        cs: list[torch.Tensor] = []
        sn: list[torch.Tensor] = []
        for j in range(min(restart, max_iter - it)):
            if reads and it + j and (it + j) % check_every == 0 and bool(res <= threshold):
                done = True
                break
            active = res > threshold
            w = matvec(basis[j])
            matvecs += 1
            h = []
            for vi in basis:
                hij = tree.dot(w, vi)
                w = tree.add(w, vi, -hij)
                h.append(hij)
            h_next = tree.norm(w)
            for i in range(j):
                h[i], h[i + 1] = cs[i] * h[i] + sn[i] * h[i + 1], -sn[i] * h[i] + cs[i] * h[i + 1]
            rho = torch.clamp_min(torch.sqrt(h[j] ** 2 + h_next**2), tiny)
            # A frozen step is the identity: unit column, no rotation, and a zero coefficient in the solve.
            c = torch.where(active, h[j] / rho, one)
            s = torch.where(active, h_next / rho, torch.zeros_like(rho))
            cs.append(c)
            sn.append(s)
            cols.append([torch.where(active, hi, torch.zeros_like(hi)) for hi in h[:j]] + [torch.where(active, rho, one)])
            g.append(torch.where(active, -s * g[j], g[j]))
            g[j] = torch.where(active, c * g[j], torch.zeros_like(g[j]))
            res = g[j + 1].abs()
            trace.append(res)
            active_flags.append(active)
            basis.append(tree.scale(w, 1.0 / torch.where(h_next > tiny, h_next, one)))
        k = len(cols)
        if k:
            zero = torch.zeros_like(beta)
            upper = torch.stack([torch.stack(col + [zero] * (k - len(col))) for col in cols], dim=1)
            y = torch.linalg.solve_triangular(upper, torch.stack(g[:k]).unsqueeze(1), upper=True).squeeze(1)
            for j in range(k):
                x = tree.add(x, basis[j], y[j])
            it += k
        if it < max_iter and not done:
            r = tree.sub(b, matvec(x))
            matvecs += 1
            beta = tree.norm(r)
            res = beta
            cycles += 1
    if transformed:
        return x, unrecorded("GMRES", matvecs)
    info = tolerance_record("GMRES", active_flags, trace, threshold, matvecs)
    return x, info.replace(extra={"restarts": cycles, "restart": restart})
