"""Black-box baselines: random search, coarse-to-fine grid search and Optuna's TPE.

Every trial trains the task's model from its initial weights under one hyperparameter setting and
scores it on the validation set; the trial loop is shared, the methods only differ in how they propose
the next setting (an ask/tell :class:`Proposer`). Grid search and TPE search the task's shared scalar
(:class:`~.task.ScalarSpace`), the standard black-box reduction when one value per feature or per
weight is out of reach; random search draws from :meth:`~.task.Task.random_hparams`, which is that
same scalar where the task has one, and the full space otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from .budget import Budget
from .history import Trace
from .inner_solvers import Params
from .task import ScalarSpace, Task


class Proposer(Protocol):
    """Proposes hyperparameter settings and is told how each one scored."""

    def ask(self) -> tuple[Params, dict[str, Any]]:
        """The next setting, and a JSON-able description of it for the history."""
        ...

    def tell(self, val_loss: float) -> None:
        """The validation loss of the setting last asked for."""
        ...


def trial_search(
    task: Task, proposer: Proposer, budget: Budget, trace: Trace, patience: int | None = None
) -> None:
    """Run trials from ``proposer`` until the budget is spent (checked before each trial and inside its
    training, which a spent budget ends: that trial is not recorded).

    Args:
        task: The problem; each trial is :meth:`~.task.Task.train_trial`.
        proposer: Where settings come from.
        budget: Wall-clock budget (and optional cap on trials).
        trace: Where each trial is recorded.
        patience: Stop once this many trials in a row have not improved the best score (see
            :meth:`~.history.Trace.stalled`); ``None`` (default) runs until the budget is spent.
    """
    trial = 0
    while not budget.exhausted(trial):
        hparams, description = proposer.ask()
        params, inner = task.train_trial(hparams, should_stop=budget.time_up)
        if inner.stopped:  # a half-trained trial is not a sample of the objective: not recorded
            trace.event(trial, f"budget spent during trial {trial} ({inner.iterations} inner iterations); not recorded")
            break
        record = trace.record(trial, params, hparams, inner_iterations=inner.iterations, **description)
        proposer.tell(record.val_loss)
        if trace.stop_if_stalled(trial, patience):
            break
        trial += 1


def _require_scalar_space(task: Task, method: str) -> ScalarSpace:
    if task.scalar_space is None:
        raise ValueError(f"{method} search needs a shared scalar hyperparameter, which task {task.name} has not")
    return task.scalar_space


class RandomProposer:
    """Independent draws from :meth:`~.task.Task.random_hparams`.

    Args:
        task: The problem.
        seed: Seed of the draws.
    """

    def __init__(self, task: Task, seed: int) -> None:
        self.task = task
        self.rng = np.random.default_rng(seed)

    def ask(self) -> tuple[Params, dict[str, Any]]:
        hparams = self.task.random_hparams(self.rng)
        return hparams, _describe(self.task, hparams)

    def tell(self, val_loss: float) -> None:
        del val_loss


def _describe(task: Task, hparams: Params) -> dict[str, Any]:
    """The shared scalar of a setting, where the task has one (all entries are then equal)."""
    if task.scalar_space is None:
        return {}
    first = next(iter(hparams.values())).reshape(-1)[0]
    return {f"log10_{task.scalar_space.name}": float(first) / math.log(10.0)}


def coarse_to_fine(low: float, high: float) -> Iterator[float]:
    """Both ends of ``[low, high]``, then the midpoints of a grid halved again and again.

    Any prefix of the sequence is close to an evenly spaced grid, so a grid search cut short by its
    budget has still covered the whole range (0, 1, ½, ¼, ¾, ⅛, ⅜, ... scaled to the interval).
    """
    yield low
    yield high
    level = 2
    while True:
        for odd in range(1, level, 2):
            yield low + (high - low) * odd / level
        level *= 2


class GridProposer:
    """Grid search over the task's shared scalar, visited coarse to fine (see :func:`coarse_to_fine`).

    Args:
        task: The problem; must have a :attr:`~.task.Task.scalar_space`.
    """

    def __init__(self, task: Task) -> None:
        space = _require_scalar_space(task, "grid")
        self.task = task
        self.points = coarse_to_fine(space.low, space.high)

    def ask(self) -> tuple[Params, dict[str, Any]]:
        hparams = self.task.hparams_from_scalar(next(self.points))
        return hparams, _describe(self.task, hparams)

    def tell(self, val_loss: float) -> None:
        del val_loss


class TPEProposer:
    """Optuna's Tree-structured Parzen Estimator over the task's shared scalar.

    Optuna is an optional dependency, imported here only. The first ``startup_trials`` settings are
    random (Optuna's default is 10, too many for budgets of a few dozen trials).

    Args:
        task: The problem; must have a :attr:`~.task.Task.scalar_space`.
        seed: Seed of the sampler.
        startup_trials: Random trials before the density model is used.

    Raises:
        ModuleNotFoundError: If Optuna is not installed.
    """

    def __init__(self, task: Task, seed: int, startup_trials: int = 5) -> None:
        space = _require_scalar_space(task, "tpe")
        try:
            import optuna
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError("--method tpe needs Optuna: pip install optuna") from error
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.task = task
        self.space = space
        self.trial: Any = None

    def ask(self) -> tuple[Params, dict[str, Any]]:
        self.trial = self.study.ask()
        value = self.trial.suggest_float(f"log10_{self.space.name}", self.space.low, self.space.high)
        hparams = self.task.hparams_from_scalar(value)
        return hparams, _describe(self.task, hparams)

    def tell(self, val_loss: float) -> None:
        import optuna

        if math.isfinite(val_loss):
            self.study.tell(self.trial, val_loss)
        else:
            self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
