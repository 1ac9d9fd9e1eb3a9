"""The guard against validation overfitting: a held-out selection split picks the reported
hyperparameters, and early stopping ends the search when that split stops improving."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from applications.hpo import compare
from applications.hpo.budget import Budget
from applications.hpo.data import Split, Splits, hold_out_selection
from applications.hpo.history import Trace
from applications.hpo.run import run
from applications.hpo.task import Metrics

pytestmark = pytest.mark.float32


def _splits(n_val: int) -> Splits:
    x = torch.arange(3 * n_val, dtype=torch.float64).reshape(-1, 1)
    y = torch.zeros(3 * n_val, dtype=torch.long)
    return Splits(*(Split(x[i * n_val:(i + 1) * n_val], y[i * n_val:(i + 1) * n_val]) for i in range(3)), n_classes=2)


def test_selection_split_is_the_validation_tail_and_disjoint_from_what_remains():
    splits = _splits(10)
    held = hold_out_selection(splits, 0.3)
    assert (len(held.val), len(held.select)) == (7, 3)
    assert torch.equal(torch.cat([held.val.x, held.select.x]), splits.val.x)
    assert held.train is splits.train and held.test is splits.test
    for fraction in (0.01, 0.99):  # rounds to an empty selection or an empty validation part
        with pytest.raises(ValueError, match="leaves a part empty"):
            hold_out_selection(splits, fraction)
    with pytest.raises(ValueError, match="already"):
        hold_out_selection(held, 0.5)


class _ScriptedTask:
    """A task whose evaluation returns scripted losses: params are ``{"step": k}`` and each split's
    loss at step k is read from a table, so the test knows which record each split prefers."""

    def __init__(self, losses: dict[str, list[float]]) -> None:
        self.losses = losses
        self.splits = SimpleNamespace(val="val", select="select" if "select" in losses else None, test="test")

    def evaluate(self, params: dict, split: str) -> Metrics:
        return Metrics(self.losses[split][params["step"]], 0.5)

    def task_metrics(self, hparams: dict) -> dict:
        return {}


def _trace(losses: dict[str, list[float]], patience: int | None) -> tuple[Trace, list[int]]:
    trace = Trace(_ScriptedTask(losses), Budget(60.0), "test", progress=False)
    stopped = []
    for step in range(len(losses["val"])):
        trace.record(step, {"step": step}, {"h": torch.tensor(float(step))})
        if trace.stop_if_stalled(step, patience):
            stopped.append(step)
            break
    return trace, stopped


# Validation loss falls at every step (the hypergradient descends on it); the selection loss is
# lowest at step 1 and rises after: validation overfitting.
OVERFIT = {"val": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], "select": [0.6, 0.45, 0.5, 0.55, 0.6, 0.7], "test": [0.0] * 6}


def test_the_selection_split_not_the_validation_split_picks_the_reported_record():
    trace, stopped = _trace(OVERFIT, patience=None)
    assert not stopped and len(trace.records) == 6
    assert trace.best.step == 1 and trace.best.select_loss == 0.45
    assert float(trace.best_hparams["h"]) == 1.0
    without = {k: v for k, v in OVERFIT.items() if k != "select"}
    assert _trace(without, patience=None)[0].best.step == 5  # no selection split: the validation loss decides


def test_early_stopping_ends_the_search_patience_steps_after_the_selection_best():
    trace, stopped = _trace(OVERFIT, patience=3)
    assert stopped == [4] and len(trace.records) == 5
    assert "no lower selection loss for 3 steps (best at step 1)" in trace.events[-1]["message"]
    # Without a selection split the still-falling validation loss never stalls.
    assert _trace({k: v for k, v in OVERFIT.items() if k != "select"}, patience=3)[1] == []


def test_guarded_implicit_run_reports_the_selection_best_and_stops_early(tmp_path):
    """On breast-cancer (seed 0) CG keeps lowering the validation loss while the selection loss rises."""
    torch.set_num_threads(1)
    result = run("logreg-l2", "implicit-cg", tmp_path, budget_seconds=300, seed=0, max_steps=50, progress=False,
                 select_fraction=0.5, patience=3)
    history = result["history"]
    best = min(history, key=lambda r: r["select_loss"])
    assert result["best"]["step"] == best["step"]
    assert len(history) == best["step"] + 4 < 50
    assert "early stop" in result["events"][-1]["message"]
    assert min(history, key=lambda r: r["val_loss"])["step"] != best["step"]
    assert (result["select_fraction"], result["patience"]) == (0.5, 3)


def test_black_box_search_stops_after_patience_trials_without_improvement(tmp_path):
    torch.set_num_threads(1)
    result = run("logreg-l2", "random", tmp_path, budget_seconds=300, seed=2, max_steps=50, progress=False,
                 patience=3)
    history = result["history"]
    assert len(history) == result["best"]["step"] + 4 < 50
    assert all(r["val_loss"] >= result["best"]["val_loss"] for r in history)


def test_compare_reports_the_model_best_on_the_selection_split():
    history = [
        {"step": k, "time": float(k), "val_loss": v, "select_loss": s, "val_accuracy": 0.9, "test_loss": t,
         "test_accuracy": 0.9}
        for k, (v, s, t) in enumerate([(0.5, 0.4, 0.30), (0.2, 0.6, 0.50)])
    ]
    run_ = {"task": "logreg-l2", "dataset": "digits", "method": "implicit-cg", "seed": 0, "budget_seconds": 5,
            "select_fraction": 0.5, "patience": 10, "history": history, "best": history[0]}
    assert compare.best_until(run_, 10.0)["step"] == 0
    assert compare.label(run_) == "implicit-cg (select 0.5, patience 10)"
    row = compare.summary_table([run_], 10.0).splitlines()[2].split("|")
    assert [c.strip() for c in row[2:8]] == ["implicit-cg (select 0.5, patience 10)", "1", "2", "0.5000", "0.4000",
                                             "0.3000"]
