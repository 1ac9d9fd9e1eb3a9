"""What a hyperparameter-optimisation task is: a bilevel problem on a classifier.

A task owns its data, its model, the inner objective (training loss with the hyperparameters in it),
the outer objective (validation cross-entropy), and how the inner problem is solved. The search
methods (:mod:`.outer_loop`, :mod:`.baselines`) only talk to this interface.

Hyperparameters are always stored on a log (or logit) scale and mapped to their natural range inside
the inner loss, so that any unconstrained torch optimizer can step on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .data import Split, Splits, hold_out_selection
from .inner_solvers import InnerInfo, LBFGSSolver, Params, SGDSolver


class Batch(NamedTuple):
    """Examples of one split; ``index`` gives their positions in it (per-example weights use it)."""

    x: Tensor
    y: Tensor
    index: Tensor


@dataclass(frozen=True)
class Metrics:
    """Mean cross-entropy and accuracy of a model on a split."""

    loss: float
    accuracy: float


@dataclass(frozen=True)
class ScalarSpace:
    """A one-dimensional search space for the black-box baselines.

    Every hyperparameter of the task takes the same value ``10 ** u`` with ``u`` in
    ``[low, high]``: the shared scalar the literature tunes when one value per feature or per weight is
    beyond black-box search.

    Attributes:
        name: What the scalar is, for reports (e.g. ``"l2"``).
        low: Lower bound of ``log10`` of the value.
        high: Upper bound of ``log10`` of the value.
    """

    name: str
    low: float
    high: float


def full_batch(split: Split) -> Batch:
    """The whole split as one batch."""
    return Batch(split.x, split.y, torch.arange(len(split)))


def batch_sampler(split: Split, size: int, generator: torch.Generator) -> Callable[[], Batch]:
    """A zero-argument callable returning a fresh uniformly drawn mini-batch of ``split``."""

    def sample() -> Batch:
        index = torch.randint(len(split), (size,), generator=generator)
        return Batch(split.x[index], split.y[index], index)

    return sample


class Task(ABC):
    """Base class of the HPO tasks.

    Subclasses set the attributes below in their constructor and implement the abstract methods.

    Attributes:
        name: Task name as on the command line.
        splits: Train / validation / test data.
        model: The classifier; only its structure is used (weights live in parameter dicts).
        inner_solver: Solver run between two outer steps, continuing from the current weights.
        trial_solver: Solver that trains from scratch for one black-box trial.
        scalar_space: Search space of grid search and TPE, ``None`` where the task has none.
        datasets: Datasets the task runs on, the default first.
        seed: Seed of the split, the initial weights and every mini-batch.
    """

    name: str
    splits: Splits
    model: nn.Module
    inner_solver: LBFGSSolver | SGDSolver
    trial_solver: LBFGSSolver | SGDSolver
    scalar_space: ScalarSpace | None
    seed: int

    # Per-task defaults found to work; the CLI can override them.
    datasets: tuple[str, ...]
    default_cg: dict[str, Any]
    default_neumann: dict[str, Any]
    default_outer_lr: float

    def __init__(self, splits: Splits, model: nn.Module, seed: int) -> None:
        self.splits = splits
        self.model = model
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.val_batch = full_batch(splits.val)

    def use_selection_split(self, fraction: float) -> None:
        """Hold out the last ``fraction`` of the validation split as a selection split.

        The hypergradient then descends on the rest of the validation data, and the selection split
        alone decides which hyperparameters are reported and when the outer loop stops
        (:class:`~.history.Trace`). See :func:`.data.hold_out_selection`.
        """
        self.splits = hold_out_selection(self.splits, fraction)
        self.val_batch = full_batch(self.splits.val)

    # --- model -------------------------------------------------------------------------------
    def init_params(self) -> Params:
        """Initial weights of every run and every trial (the model's own initialisation)."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def logits(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Model output for inputs ``x`` under weights ``params``."""
        return functional_call(self.model, dict(params), (x,))

    def data_loss(self, params: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Per-example cross-entropy, shape ``(len(batch),)``."""
        return F.cross_entropy(self.logits(params, batch.x), batch.y, reduction="none")

    def outer_loss(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Validation objective: mean cross-entropy (the hyperparameters enter only through w*)."""
        del hparams
        return self.data_loss(params, batch).mean()

    @torch.no_grad()
    def evaluate(self, params: Mapping[str, Tensor], split: Split) -> Metrics:
        """Mean cross-entropy and accuracy on ``split``."""
        logits = self.logits(params, split.x)
        loss = F.cross_entropy(logits, split.y)
        accuracy = (logits.argmax(dim=1) == split.y).double().mean()
        return Metrics(float(loss), float(accuracy))

    # --- inner problem -----------------------------------------------------------------------
    @abstractmethod
    def inner_loss(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Training objective, with the hyperparameters in it."""

    @abstractmethod
    def train_batches(self) -> Callable[[], Batch]:
        """Where inner solvers take their batches from (full batch or mini-batches)."""

    def hessian_batch(self) -> Batch | Callable[[], Batch]:
        """The ``inner_batch`` of the hypergradient (defaults to the whole training split)."""
        return full_batch(self.splits.train)

    def _solve(
        self,
        solver: LBFGSSolver | SGDSolver,
        params: Mapping[str, Tensor],
        hparams: Mapping[str, Tensor],
        should_stop: Callable[[], bool] | None,
    ) -> tuple[Params, InnerInfo]:
        fixed = {k: v.detach() for k, v in hparams.items()}
        return solver(lambda p, b: self.inner_loss(p, fixed, b), params, self.train_batches(), should_stop)

    def solve_inner(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor],
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[Params, InnerInfo]:
        """One stretch of inner training between outer steps, warm-started from ``params``; it ends early
        (``InnerInfo.stopped``) once ``should_stop()`` returns True."""
        return self._solve(self.inner_solver, params, hparams, should_stop)

    def train_trial(
        self, hparams: Mapping[str, Tensor], should_stop: Callable[[], bool] | None = None
    ) -> tuple[Params, InnerInfo]:
        """Train from the initial weights for one black-box trial (ended early as :meth:`solve_inner`)."""
        return self._solve(self.trial_solver, self.init_params(), hparams, should_stop)

    # --- hyperparameters ---------------------------------------------------------------------
    @abstractmethod
    def init_hparams(self) -> Params:
        """Starting hyperparameters of the gradient-based methods (leaf tensors needing grad)."""

    def random_hparams(self, rng: np.random.Generator) -> Params:
        """One draw of random search: the shared scalar, uniform in ``log10`` over its range.

        Tasks without a :attr:`scalar_space` override this.
        """
        if self.scalar_space is None:
            raise NotImplementedError(f"task {self.name} has no random-search space")
        return self.hparams_from_scalar(rng.uniform(self.scalar_space.low, self.scalar_space.high))

    def hparams_from_scalar(self, log10_value: float) -> Params:
        """Every hyperparameter set to the shared value ``10 ** log10_value``.

        Raises:
            NotImplementedError: If the task has no :attr:`scalar_space`.
        """
        raise NotImplementedError(f"task {self.name} has no shared-scalar search space")

    @abstractmethod
    def summarize_hparams(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        """A JSON-able summary of (possibly tens of thousands of) hyperparameters."""

    def task_metrics(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        """Task-specific figures reported with the result (none by default)."""
        del hparams
        return {}

    @property
    def n_hparams(self) -> int:
        """Number of scalar hyperparameters the gradient-based methods tune."""
        return sum(t.numel() for t in self.init_hparams().values())


class SoftmaxRegressionTask(Task):
    """A task whose model is softmax regression in float64, fitted on the whole training split.

    The inner problem is convex, so it starts from zero weights (no symmetry to break) and is solved
    by L-BFGS to a gradient tolerance, both between outer steps and in black-box trials.

    Args:
        splits: The data, features in float64.
        seed: Seed of the task.
        tol: Inner gradient tolerance (largest absolute entry).
    """

    def __init__(self, splits: Splits, seed: int, tol: float) -> None:
        model = nn.Linear(splits.train.x.shape[1], splits.n_classes, dtype=torch.float64)
        super().__init__(splits, model, seed)
        self.inner_solver = self.trial_solver = LBFGSSolver(tol=tol)
        self._train = full_batch(splits.train)

    def init_params(self) -> Params:
        return {k: torch.zeros_like(v) for k, v in self.model.named_parameters()}

    def train_batches(self) -> Callable[[], Batch]:
        return lambda: self._train


def quantiles(values: Tensor) -> dict[str, float]:
    """Min / quartiles / max / mean of a tensor, for hyperparameter summaries."""
    flat = values.detach().double().reshape(-1)
    q = torch.quantile(flat, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=flat.dtype))
    return {
        "min": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "max": float(q[4]),
        "mean": float(flat.mean()),
    }
