"""The diagonal of an operator known only by its products: Hutchinson's estimator."""

from __future__ import annotations

import torch

from hypergrad import tree
from hypergrad.solvers.cg import MatVec


def hutchinson_diagonal(matvec: MatVec, like: tree.Tree, samples: int, seed: int = 0) -> tree.Tree:
    """``diag(A) ≈ (1/k) Σ_i z_i ⊙ A z_i`` with k = ``samples`` Rademacher probes (k matvecs).

    Unbiased; the error of entry j is (Σ_{l≠j} A_jl²/k)^½, so it is accurate where the diagonal
    dominates its row, which is where a Jacobi preconditioner helps. Bekas, Kokiopoulou & Saad, "An
    estimator for the diagonal of a matrix", 2007. The probes come from a private generator, so the
    estimate does not move the global RNG.
    """
    first = next(iter(like.values()))
    gen = torch.Generator(device=first.device).manual_seed(seed)
    acc = tree.zeros_like(like)
    for _ in range(samples):
        z = {k: torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
             for k, x in like.items()}
        acc = tree.add(acc, {k: z[k] * az for k, az in matvec(z).items()})
    return tree.scale(acc, 1.0 / samples)
