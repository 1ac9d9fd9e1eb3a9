"""The per-step record every search method keeps, and its progress bar.

Gradient-based methods record once per outer step, black-box methods once per trial; both go
through :class:`Trace`, so the histories, the best-so-far bookkeeping and the charged time mean the
same thing for every method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor
from tqdm import tqdm

from .budget import Budget
from .inner_solvers import Params
from .task import Task


@dataclass
class Record:
    """One outer step or trial.

    Attributes:
        step: Index of the outer step or trial.
        time: Budget seconds charged when the model was evaluated.
        val_loss: Validation cross-entropy (the outer objective).
        val_accuracy: Validation accuracy.
        test_loss: Test cross-entropy (reported, never used for a decision).
        test_accuracy: Test accuracy.
        extra: Method- and task-specific figures (solver diagnostics, the trial's hyperparameter,
            flip-detection scores, ...).
        select_loss: Cross-entropy on the selection split, where the task holds one out.
        select_accuracy: Accuracy on the selection split, where the task holds one out.
    """

    step: int
    time: float
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    extra: dict[str, Any] = field(default_factory=dict)
    select_loss: float | None = None
    select_accuracy: float | None = None

    @property
    def score(self) -> float:
        """What picks the best record: the selection loss if there is one, else the validation loss."""
        return self.val_loss if self.select_loss is None else self.select_loss

    def to_json(self) -> dict[str, Any]:
        """A flat JSON-able dict (``extra`` merged in)."""
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


class Trace:
    """Evaluates and records the model after each step, tracks the best one, drives the bar.

    The best record is the one with the lowest :attr:`Record.score`: the selection loss when the task
    holds out a selection split, the validation loss otherwise. Evaluating the selection split is
    charged to the budget (it drives decisions); the test split is not.

    Args:
        task: The task whose splits the model is evaluated on.
        budget: The run's budget; test evaluation and bookkeeping are not charged to it.
        label: Text in front of the progress bar.
        progress: Whether to show a tqdm progress bar (on stderr) of the charged time.
    """

    def __init__(self, task: Task, budget: Budget, label: str, progress: bool = True) -> None:
        self.task = task
        self.budget = budget
        self.records: list[Record] = []
        self.best: Record | None = None
        self.best_hparams: Params | None = None
        self.events: list[dict[str, Any]] = []
        self._bar = tqdm(
            total=round(budget.seconds, 1), desc=label, unit="s", disable=not progress, leave=False
        )

    def record(
        self, step: int, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], **extra: Any
    ) -> Record:
        """Evaluate ``params`` (trained under ``hparams``) and append a :class:`Record`."""
        val = self.task.evaluate(params, self.task.splits.val)
        select = None if self.task.splits.select is None else self.task.evaluate(params, self.task.splits.select)
        time = self.budget.elapsed()
        with self.budget.paused():
            test = self.task.evaluate(params, self.task.splits.test)
            extra.update(self.task.task_metrics(hparams))
            record = Record(step, time, val.loss, val.accuracy, test.loss, test.accuracy, extra)
            if select is not None:
                record.select_loss, record.select_accuracy = select.loss, select.accuracy
            self.records.append(record)
            if math.isfinite(record.score) and (self.best is None or record.score < self.best.score):
                self.best = record
                self.best_hparams = {k: v.detach().clone() for k, v in hparams.items()}
            self._bar.n = min(round(time, 1), self._bar.total)
            best = self.best.score if self.best is not None else math.nan
            self._bar.set_postfix(step=step, val=f"{val.loss:.4f}", best=f"{best:.4f}", refresh=True)
        return record

    def stalled(self, patience: int | None) -> bool:
        """Whether the last ``patience`` records all failed to improve on the best score (early stopping).

        ``None`` never stalls. The score is the selection loss where the task holds out a selection
        split, so the split that stops the search is not the one the hypergradient descends on.
        """
        if patience is None or self.best is None:
            return False
        return self.records[-1].step - self.best.step >= patience

    def stop_if_stalled(self, step: int, patience: int | None) -> bool:
        """:meth:`stalled`, noting an early stop as an event of ``step`` when it happens."""
        if not self.stalled(patience) or self.best is None:
            return False
        split = "validation" if self.best.select_loss is None else "selection"
        self.event(step, f"early stop: no lower {split} loss for {patience} steps (best at step {self.best.step})")
        return True

    def event(self, step: int, message: str) -> None:
        """Note something that happened at ``step`` (e.g. a skipped non-finite hypergradient)."""
        self.events.append({"step": step, "time": self.budget.elapsed(), "message": message})
        self._bar.write(f"step {step}: {message}")

    def close(self) -> None:
        """Close the progress bar."""
        self._bar.close()
