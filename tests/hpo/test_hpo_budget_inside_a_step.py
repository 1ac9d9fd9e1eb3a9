"""The budget holds inside a step, and result.json and best_hparams.pt are written as one pair.

No wall time is asserted: the budget's clock is replaced by one that counts the questions it is asked
(``time_up``), so a test knows exactly which evaluation or product a spent budget interrupts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import hypergrad as hg
from applications.checkpoints import CheckpointError
from applications.hpo.baselines import RandomProposer, trial_search
from applications.hpo.budget import Budget
from applications.hpo.history import Trace
from applications.hpo.inner_solvers import LBFGSSolver, SGDSolver
from applications.hpo.logreg_l2 import LogregL2
from applications.hpo.outer_loop import implicit_search
from applications.hpo.results import HPARAMS_FILE, RESULT_FILE, load_best_hparams, write_result


class CountingBudget(Budget):
    """A budget whose seconds are spent after ``limit`` questions."""

    def __init__(self, limit: int, max_steps: int | None = None) -> None:
        super().__init__(1e9, max_steps)
        self.limit = limit
        self.asked = 0

    def time_up(self) -> bool:
        self.asked += 1
        return self.asked > self.limit


def _counter(limit: int) -> tuple[list[int], object]:
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] > limit

    return asked, should_stop


def _quadratic(p: dict[str, torch.Tensor], batch: object) -> torch.Tensor:
    return ((p["w"] - torch.arange(5.0, dtype=torch.float64)) ** 2 * torch.logspace(0, 3, 5, dtype=torch.float64)).sum()


def test_lbfgs_stops_at_the_evaluation_the_budget_ends() -> None:
    start = {"w": torch.zeros(5, dtype=torch.float64)}
    asked, never = _counter(10**9)
    _, full = LBFGSSolver(tol=1e-10)(_quadratic, start, lambda: None, never)
    assert not full.stopped and asked[0] > 3
    _, stop = _counter(3)
    _, cut = LBFGSSolver(tol=1e-10)(_quadratic, start, lambda: None, stop)
    assert cut.stopped and cut.iterations < full.iterations


def test_sgd_stops_at_the_step_the_budget_ends() -> None:
    _, stop = _counter(4)
    _, info = SGDSolver(steps=10, lr=1e-4)(_quadratic, {"w": torch.zeros(5, dtype=torch.float64)}, lambda: None, stop)
    assert info.stopped and info.iterations == 4


def _first_solve_questions(task: LogregL2) -> int:
    asked, never = _counter(10**9)
    task.solve_inner(task.init_params(), task.init_hparams(), should_stop=never)
    return asked[0]


@pytest.fixture(scope="module")
def task() -> LogregL2:
    return LogregL2("breast-cancer", seed=0)


def test_a_budget_spent_inside_the_hypergradient_ends_the_run_there(task: LogregL2) -> None:
    # The first solve, the check before the hypergradient, the start of the estimate, then 3 HVPs.
    budget = CountingBudget(_first_solve_questions(task) + 1 + 1 + 3)
    trace = Trace(task, budget, "t", progress=False)
    implicit_search(task, hg.CG(max_iter=200), lambda ps: torch.optim.Adam(ps, lr=0.1), budget, trace)
    assert len(trace.records) == 1 and "hg_iterations" not in trace.records[0].extra  # no step applied
    assert [e["message"] for e in trace.events] == ["budget spent during the hypergradient (3 products); stopped there"]


def test_a_budget_spent_inside_the_inner_solve_ends_the_run_there(task: LogregL2) -> None:
    budget = CountingBudget(3)
    trace = Trace(task, budget, "t", progress=False)
    implicit_search(task, hg.CG(), lambda ps: torch.optim.Adam(ps, lr=0.1), budget, trace)
    assert len(trace.records) == 1 and trace.records[0].extra["inner_stopped"]
    assert trace.events[0]["message"].startswith("budget spent during the inner solve")


def test_a_trial_cut_by_the_budget_is_not_recorded(task: LogregL2) -> None:
    first = CountingBudget(10**9, max_steps=1)
    trial_search(task, RandomProposer(task, 0), first, Trace(task, first, "t", progress=False))
    # The first trial completes; the second is asked to stop at its third evaluation.
    budget = CountingBudget(first.asked + 1 + 2)
    trace = Trace(task, budget, "t", progress=False)
    trial_search(task, RandomProposer(task, 0), budget, trace)
    assert len(trace.records) == 1 and "budget spent during trial 1" in trace.events[-1]["message"]


def test_a_growing_neumann_series_is_one_event_in_the_history(task: LogregL2,
                                                            recwarn: pytest.WarningsRecorder) -> None:
    budget = Budget(1e9, max_steps=3)
    trace = Trace(task, budget, "t", progress=False)
    implicit_search(task, hg.Neumann(terms=20, lr=1000.0), lambda ps: torch.optim.Adam(ps, lr=0.1), budget, trace)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    growth = [e for e in trace.events if "series terms grow" in e["message"]]
    assert len(growth) == 1 and "\n" not in growth[0]["message"]
    assert [r.extra["hg_diverged"] for r in trace.records[:-1]] == [True, True]


# --- result.json and best_hparams.pt as one pair ----------------------------------------------------------


def _write(out: Path, value: float) -> None:
    write_result(out, {"run": value}, {"log_l2": torch.full((3,), value, dtype=torch.float64)})


def _state(out: Path) -> tuple[float | None, float | None]:
    """(the run result.json names, the value in best_hparams.pt); None for a file that is absent."""
    result = json.loads((out / RESULT_FILE).read_text())["run"] if (out / RESULT_FILE).exists() else None
    best = (float(torch.load(out / HPARAMS_FILE, weights_only=True)["hparams"]["log_l2"][0])
            if (out / HPARAMS_FILE).exists() else None)
    return result, best


@pytest.mark.parametrize("failing", [1, 2])
def test_a_failure_between_the_two_files_never_leaves_a_new_best_beside_an_old_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: int) -> None:
    _write(tmp_path, 1.0)
    assert _state(tmp_path) == (1.0, 1.0)
    real = os.replace
    calls = [0]

    def crash_at_rename(src: object, dst: object) -> None:
        calls[0] += 1
        if calls[0] == failing:
            raise OSError("disk gone")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", crash_at_rename)
    with pytest.raises(OSError, match="disk gone"):
        _write(tmp_path, 2.0)
    result, best = _state(tmp_path)
    assert result is None and best == (1.0 if failing == 1 else 2.0)  # no result.json to pair with the wrong file
    assert sorted(p.name for p in tmp_path.iterdir()) == [HPARAMS_FILE]  # no temporary file left behind


def test_the_pair_names_its_file_by_hash_and_a_swapped_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "a", 1.0)
    _write(tmp_path / "b", 2.0)
    assert float(load_best_hparams(tmp_path / "a")["log_l2"][0]) == 1.0
    os.replace(tmp_path / "b" / HPARAMS_FILE, tmp_path / "a" / HPARAMS_FILE)
    with pytest.raises(CheckpointError, match="is not the file .* names"):
        load_best_hparams(tmp_path / "a")


def test_a_run_without_hyperparameters_removes_an_older_best_file(tmp_path: Path) -> None:
    _write(tmp_path, 1.0)
    write_result(tmp_path, {"run": 3.0}, None)
    assert _state(tmp_path) == (3.0, None)
    assert json.loads((tmp_path / RESULT_FILE).read_text())["files"] == {}
