"""Warm starts change the time of the convex tasks' inner solves, nothing else.

(How much time they save is measured in docs/hpo.md, not asserted: L-BFGS starts each solve without
curvature memory, so a closer start saves few iterations, and sometimes none.)
"""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from applications.hpo.budget import Budget
from applications.hpo.history import Trace
from applications.hpo.logreg_l2 import LogregL2
from applications.hpo.outer_loop import implicit_search
from applications.hpo.reweight import Reweight


def hypergradient_at(task, params, hparams):
    return hg.hypergradient(
        task.outer_loss,
        task.inner_loss,
        params,
        hparams,
        outer_batch=task.val_batch,
        inner_batch=task.hessian_batch(),
        method=hg.CG(**task.default_cg),
    )


@pytest.mark.parametrize("task", [LogregL2("digits"), Reweight("digits")], ids=["logreg-l2", "reweight"])
def test_warm_started_solve_gives_the_cold_solution_and_hypergradient(task):
    start = task.init_hparams()
    previous, _ = task.solve_inner(task.init_params(), start)
    # One outer step's worth of change (Adam moves each entry by about its learning rate).
    gen = torch.Generator().manual_seed(0)
    moved = {k: (v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype)).detach() for k, v in start.items()}
    warm, warm_info = task.solve_inner(previous, moved)
    cold, cold_info = task.solve_inner(task.init_params(), moved)
    assert max(warm_info.grad_norm, cold_info.grad_norm) < 1e-6
    for name in warm:
        # Both stop at a gradient of 1e-8; the weights then agree to what the conditioning allows.
        torch.testing.assert_close(warm[name], cold[name], rtol=0, atol=1e-4)
    warm_grad = hypergradient_at(task, warm, moved).grads
    cold_grad = hypergradient_at(task, cold, moved).grads
    for name in warm_grad:
        scale = cold_grad[name].abs().max()
        torch.testing.assert_close(warm_grad[name], cold_grad[name], rtol=0, atol=1e-4 * scale)


def run_search(task, warm_start):
    budget = Budget(600.0, max_steps=6)
    trace = Trace(task, budget, "warm" if warm_start else "cold", progress=False)
    optimizer = lambda ps: torch.optim.Adam(ps, lr=0.1)  # noqa: E731
    implicit_search(task, hg.CG(**task.default_cg), optimizer, budget, trace, warm_start=warm_start)
    return trace


def test_warm_and_cold_searches_follow_the_same_path():
    warm = run_search(LogregL2("breast-cancer"), warm_start=True)
    cold = run_search(LogregL2("breast-cancer"), warm_start=False)
    warm_losses = torch.tensor([r.val_loss for r in warm.records])
    cold_losses = torch.tensor([r.val_loss for r in cold.records])
    torch.testing.assert_close(warm_losses, cold_losses, rtol=1e-6, atol=0)
    # The path did move, so the comparison above is not between constants.
    assert warm_losses[-1] < warm_losses[0] - 1e-3
    torch.testing.assert_close(warm.best_hparams["log_l2"], cold.best_hparams["log_l2"], rtol=0, atol=1e-5)
