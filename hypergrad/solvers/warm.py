"""A starting guess for an iterative solve, rescaled so that it is never worse than starting from zero."""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec


def warm_start(matvec: MatVec, b: tree.Tree, x0: tree.Tree) -> tuple[tree.Tree, tree.Tree, torch.Tensor]:
    """``(x, r, α)``: the start x = α x0 and its residual r = b − A x, with α minimising ‖b − α A x0‖.

    α = ⟨A x0, b⟩ / ‖A x0‖², so ‖r‖² = ‖b‖² − ⟨A x0, b⟩²/‖A x0‖² ≤ ‖b‖²: the rescaled guess is never
    worse than a cold start in residual, and a guess orthogonal to the answer, zero or non-finite gets
    α = 0, which is the cold start. The previous outer step's adjoint usually needs α ≈ 1; the scalar
    also repairs a guess whose scale drifted (a changed regularisation, a rescaled loss). One matvec;
    no host read.
    """
    ax = matvec(x0)
    aa = tree.dot(ax, ax)
    ab = tree.dot(ax, b)
    ok = torch.isfinite(aa) & torch.isfinite(ab) & (aa > torch.finfo(aa.dtype).tiny)
    alpha = torch.where(ok, ab / torch.where(ok, aa, torch.ones_like(aa)), torch.zeros_like(aa))
    x = tree.select(ok, tree.scale(x0, alpha), tree.zeros_like(b))
    r = tree.select(ok, tree.add(b, ax, -alpha), dict(b))
    return x, r, alpha
