"""The ``hypergrad`` estimator behind each gradient ``--method`` of a search (see :mod:`.loop` for what
each computes, and docs/nas.md for the table)."""

from __future__ import annotations

import hypergrad as hg
from applications.nas.searching.config import SearchConfig


def estimator(config: SearchConfig, lr: float) -> object:
    """The ``hypergrad`` method object of ``config.method`` at the current weight learning rate."""
    if config.method == "darts-1st":
        return hg.FirstOrder()
    if config.method == "darts-2nd":
        return hg.OneStep(lr=lr, finite_difference=True)
    if config.method == "idarts":
        return hg.StochasticNeumann(terms=config.neumann_terms, lr=lr, share_batch=config.share_batch)
    if config.method == "implicit-minres":
        return hg.MINRES(max_iter=config.solver_max_iter, tol=config.solver_tol, damping=config.solver_damping)
    return hg.CG(max_iter=config.solver_max_iter, tol=config.solver_tol, damping=config.solver_damping)
