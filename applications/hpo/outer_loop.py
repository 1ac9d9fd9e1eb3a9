"""The gradient-based outer loop, shared by every task.

Each outer step: continue inner training from the previous weights under the current
hyperparameters, record validation and test metrics, accumulate the hypergradient into the
hyperparameters' ``.grad`` with :func:`hypergrad.backward`, and let any ``torch.optim`` optimizer
take the step.

The budget holds inside a step too: the inner solve and the hypergradient ask it before every
objective evaluation and every Hessian-vector product (``should_stop``), and a spent budget ends the
run there, noted as an event. A hypergradient whose series or solve grew is one event in the history
(its message) and ``hg_diverged`` in each record, never a multi-line warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

import hypergrad as hg

from .budget import Budget
from .history import Trace
from .task import Task

OptimizerFactory = Callable[[Iterable[Tensor]], torch.optim.Optimizer]

#: Consecutive non-finite hypergradients after which the search gives up.
MAX_NONFINITE = 3


def implicit_search(
    task: Task,
    method: hg.CG | hg.Neumann,
    make_optimizer: OptimizerFactory,
    budget: Budget,
    trace: Trace,
    warm_start: bool = True,
    patience: int | None = None,
) -> None:
    """Tune the task's hyperparameters by implicit hypergradients until the budget is spent or the
    search stops improving.

    A non-finite hypergradient is never applied: the step is skipped and noted in ``trace.events``
    with the step where it appeared; after :data:`MAX_NONFINITE` in a row the search stops.

    Args:
        task: The bilevel problem.
        method: A hypergrad method object (e.g. ``hg.CG(max_iter=100)``, ``hg.Neumann(terms=20)``).
        make_optimizer: Builds the outer optimizer from the hyperparameter tensors, e.g.
            ``lambda ps: torch.optim.Adam(ps, lr=0.1)``.
        budget: Wall-clock budget (and optional step cap); checked before each outer step and, through
            ``should_stop``, inside the inner solve and the hypergradient.
        trace: Where each step is recorded.
        warm_start: Continue each inner solve from the previous step's weights (default). Off, every
            solve starts from the initial weights: for the convex tasks this gives the same iterates
            more slowly, which is what it is for (measuring the saving).
        patience: Stop once this many outer steps in a row have not improved the best score (the
            selection loss where the task holds out a selection split, else the validation loss);
            ``None`` (default) runs until the budget is spent.

    Example:
        >>> task = LogregL2("breast-cancer")
        >>> budget = Budget(20.0)
        >>> trace = Trace(task, budget, "implicit-cg")
        >>> implicit_search(task, hg.CG(), lambda ps: torch.optim.Adam(ps, lr=0.1), budget, trace)
        >>> trace.best.val_loss
    """
    hparams = task.init_hparams()
    optimizer = make_optimizer(list(hparams.values()))
    start = params = task.init_params()
    nonfinite = 0
    step = 0
    growth_noted = False
    while True:
        params, inner = task.solve_inner(params if warm_start else start, hparams, should_stop=budget.time_up)
        record = trace.record(
            step, params, hparams, inner_iterations=inner.iterations, inner_grad_norm=inner.grad_norm
        )
        if inner.stopped:
            record.extra["inner_stopped"] = True
            trace.event(step, f"budget spent during the inner solve ({inner.iterations} iterations); stopped there")
            break
        # The budget is checked after recording, so that the last inner solve is always reported.
        if budget.exhausted(step + 1) or trace.stop_if_stalled(step, patience):
            break
        optimizer.zero_grad()
        try:
            # The library warns when a series grows; the history records it instead (one event, hg_diverged).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = hg.backward(
                    task.outer_loss,
                    task.inner_loss,
                    params,
                    hparams,
                    outer_batch=task.val_batch,
                    inner_batch=task.hessian_batch(),
                    method=method,
                    should_stop=budget.time_up,
                )
        except hg.Interrupted as error:
            trace.event(step, f"budget spent during the hypergradient ({error.products} products); stopped there")
            break
        except hg.NonFiniteError as error:
            nonfinite += 1
            trace.event(step, f"hypergradient skipped: {error}")
            if nonfinite >= MAX_NONFINITE:
                trace.event(step, f"stopping after {nonfinite} non-finite hypergradients in a row")
                break
        else:
            nonfinite = 0
            info = result.info
            record.extra.update(
                hg_iterations=info.iterations,
                hg_residual_norm=info.residual_norm,
                hg_converged=info.converged,
                hg_hvps=info.hvps,
                hg_seconds=info.seconds,
                hg_diverged=info.diverged,
            )
            if info.diverged and not growth_noted:
                growth_noted = True
                trace.event(step, f"{info.message or 'the hypergradient solve grew'} (steps where it grows are "
                                  "marked hg_diverged in the history)")
            optimizer.step()
        step += 1

