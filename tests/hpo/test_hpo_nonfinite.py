"""The HPO outer loop never applies a non-finite hypergradient: it skips the step, notes it, and stops
after MAX_NONFINITE in a row; the TPE baseline records a non-finite trial as failed."""

from __future__ import annotations

import math

import pytest
import torch

import hypergrad as hg
from applications.hpo.baselines import TPEProposer
from applications.hpo.budget import Budget
from applications.hpo.history import Trace
from applications.hpo.logreg_l2 import LogregL2
from applications.hpo.outer_loop import MAX_NONFINITE, implicit_search

pytestmark = pytest.mark.float32


def _search(task: LogregL2, steps: int) -> tuple[Trace, list[torch.Tensor]]:
    seen: list[torch.Tensor] = []

    def make_optimizer(params):
        params = list(params)
        seen.extend(params)
        return torch.optim.SGD(params, lr=0.5)

    budget = Budget(600.0, max_steps=steps)
    trace = Trace(task, budget, "test", progress=False)
    implicit_search(task, hg.CG(max_iter=20), make_optimizer, budget, trace)
    return trace, seen


def _poison(task: LogregL2, bad_calls: set[int]) -> None:
    """The outer loss of the hypergradient is NaN on the given calls (counted from 0)."""
    clean, calls = task.outer_loss, {"n": 0}

    def outer(params, hparams, batch):
        n = calls["n"]
        calls["n"] += 1
        value = clean(params, hparams, batch)
        return value * math.nan if n in bad_calls else value

    task.outer_loss = outer


def test_a_search_stops_after_max_nonfinite_skipped_steps_without_moving_the_hyperparameters() -> None:
    torch.manual_seed(0)
    task = LogregL2("breast-cancer", seed=0)
    start = {k: v.detach().clone() for k, v in task.init_hparams().items()}
    _poison(task, set(range(100)))
    trace, hparams = _search(task, steps=10)
    skipped = [e for e in trace.events if e["message"].startswith("hypergradient skipped")]
    assert len(skipped) == MAX_NONFINITE and [e["step"] for e in skipped] == list(range(MAX_NONFINITE))
    assert trace.events[-1]["message"] == f"stopping after {MAX_NONFINITE} non-finite hypergradients in a row"
    assert len(trace.records) == MAX_NONFINITE
    assert all(torch.equal(h.detach(), start[k]) for h, k in zip(hparams, start))


def test_one_nonfinite_step_is_skipped_and_the_search_goes_on() -> None:
    torch.manual_seed(0)
    task = LogregL2("breast-cancer", seed=0)
    _poison(task, {1})  # the second outer step's hypergradient
    trace, hparams = _search(task, steps=5)
    assert [(e["step"], e["message"].split(":")[0]) for e in trace.events] == [(1, "hypergradient skipped")]
    assert len(trace.records) == 5
    assert "hg_iterations" in trace.records[0].extra and "hg_iterations" not in trace.records[1].extra
    assert all(math.isfinite(float(h.detach().abs().max())) for h in hparams)


def test_tpe_records_a_nonfinite_loss_as_a_failed_trial() -> None:
    proposer = TPEProposer(LogregL2("breast-cancer", seed=0), seed=0)
    proposer.ask()
    proposer.tell(math.nan)
    proposer.ask()
    proposer.tell(0.25)
    states = [t.state.name for t in proposer.study.trials]
    assert states == ["FAIL", "COMPLETE"] and proposer.study.best_value == 0.25
