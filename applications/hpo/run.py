"""Command line: tune one task with one method under a wall-clock budget.

    python -m applications.hpo.run --task logreg-l2 --method implicit-cg --budget-seconds 30 \\
        --seed 0 --out runs/hpo/logreg-l2/implicit-cg/0

Writes ``OUT/result.json`` (configuration, best and final validation/test metrics, the best
hyperparameters' summary, wall time, per-step history) and ``OUT/best_hparams.pt``. With
``--select-fraction F`` a share F of the validation split is held out and picks the reported ("best")
hyperparameters; ``--patience N`` stops the search after N steps without improvement. Bad options, and
a dataset file found missing or malformed once the run loads it, are refused with a one-line error and
exit status 2, before anything is written; a run in which no step gave a finite validation (or
selection) loss writes its result.json, says so in one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import hypergrad as hg
from applications.cli_checks import nonnegative_int, output_dir, positive_float, positive_int

from .baselines import GridProposer, Proposer, RandomProposer, TPEProposer, trial_search
from .budget import Budget
from .cli import OneLineParser
from .data import DataError
from .history import Trace
from .logreg_l2 import LogregL2
from .outer_loop import implicit_search
from .results import RESULT_FILE, build_result, write_result
from .reweight import Reweight
from .task import Task
from .weight_decay import WeightDecay

TASKS: dict[str, type[LogregL2] | type[WeightDecay] | type[Reweight]] = {
    cls.name: cls for cls in (LogregL2, WeightDecay, Reweight)
}
GRADIENT_METHODS = ("implicit-cg", "implicit-neumann")
BLACK_BOX_METHODS = ("random", "grid", "tpe")
METHODS = GRADIENT_METHODS + BLACK_BOX_METHODS
#: Exit status of a run that completed but found no finite loss to report (bad options exit with 2).
RUNTIME_ERROR = 1


class UsageError(ValueError):
    """An option the run cannot work with; the CLI prints it on one line and exits with status 2."""


def _optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """A ``torch.optim`` optimizer class by case-insensitive name (``adam`` -> ``Adam``)."""
    found = {
        key.lower(): value
        for key, value in vars(torch.optim).items()
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
        and value is not torch.optim.Optimizer
    }
    if name.lower() not in found:
        raise UsageError(f"--outer-optimizer {name!r} is not a torch.optim optimizer (e.g. Adam, SGD, RMSprop)")
    return found[name.lower()]


def hypergradient_method(
    task: Task, method: str, hvps: int | None = None, neumann_lr: float | str | None = None
) -> hg.CG | hg.Neumann:
    """The hypergrad method object of ``method`` with the task's defaults and the given overrides.

    Args:
        task: Supplies the defaults (``default_cg`` / ``default_neumann``).
        method: ``"implicit-cg"`` or ``"implicit-neumann"``.
        hvps: CG iteration cap or number of Neumann terms.
        neumann_lr: Neumann step γ (a float or ``"auto"``).
    """
    if method == "implicit-cg":
        options = dict(task.default_cg)
        if hvps is not None:
            options["max_iter"] = hvps
        return hg.CG(**options)
    options = dict(task.default_neumann)
    if hvps is not None:
        options["terms"] = hvps
    if neumann_lr is not None:
        options["lr"] = neumann_lr
    return hg.Neumann(**options)


def _proposer(task: Task, method: str, seed: int) -> Proposer:
    try:
        if method == "random":
            return RandomProposer(task, seed)
        if method == "grid":
            return GridProposer(task)
        return TPEProposer(task, seed)
    except (ValueError, ModuleNotFoundError) as error:
        raise UsageError(str(error)) from None


def _warm_up_torch_optim() -> None:
    """Take one throwaway optimizer step.

    The first ``torch.optim`` step of a process imports torch's compiler stack (about 2 s here): a
    one-off cost that belongs to no method, so it is paid before any budget starts.
    """
    weight = torch.zeros(1, requires_grad=True)
    weight.grad = torch.zeros(1)
    torch.optim.SGD([weight], lr=0.0).step()


def run(
    task: str,
    method: str,
    out: Path,
    budget_seconds: float = 30.0,
    seed: int = 0,
    dataset: str | None = None,
    outer_optimizer: str = "Adam",
    outer_lr: float | None = None,
    max_steps: int | None = None,
    hvps: int | None = None,
    neumann_lr: float | str | None = None,
    warm_start: bool = True,
    progress: bool = True,
    select_fraction: float | None = None,
    patience: int | None = None,
) -> dict[str, Any]:
    """Tune ``task`` with ``method`` and write the result into ``out``.

    Args:
        task: One of :data:`TASKS`.
        method: One of :data:`METHODS`.
        out: Output directory (created if missing).
        budget_seconds: Wall-clock budget; test evaluation is not charged.
        seed: Seed of the data split, the initial weights, the mini-batches and the search.
        dataset: Dataset of the task (default: the task's first).
        outer_optimizer: Name of the ``torch.optim`` optimizer of the hyperparameters.
        outer_lr: Its learning rate (default: the task's ``default_outer_lr``).
        max_steps: Optional cap on outer steps / trials.
        hvps: Override of the CG iteration cap / number of Neumann terms.
        neumann_lr: Override of the Neumann step γ (float or ``"auto"``).
        warm_start: Warm-start inner solves from the previous outer step (gradient methods).
        progress: Show a progress bar.
        select_fraction: Hold out this share of the validation split as a selection split, which
            alone picks the reported hyperparameters (default: none; the validation split does).
        patience: Stop after this many steps or trials without a lower selection loss (validation
            loss without a selection split); default: run the whole budget.

    Returns:
        The content written to ``out/result.json``.

    Raises:
        UsageError: If an option is invalid.
    """
    if task not in TASKS:
        raise UsageError(f"--task {task!r} is unknown; expected one of {', '.join(TASKS)}")
    cls = TASKS[task]
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is unknown; expected one of {', '.join(METHODS)}")
    dataset = cls.datasets[0] if dataset is None else dataset
    if dataset not in cls.datasets:
        raise UsageError(f"--dataset {dataset!r} does not fit task {task}; expected one of {', '.join(cls.datasets)}")
    if not budget_seconds > 0:
        raise UsageError(f"--budget-seconds {budget_seconds} must be positive")
    if max_steps is not None and max_steps < 1:
        raise UsageError(f"--max-steps {max_steps} must be at least 1")
    if seed < 0:
        raise UsageError(f"--seed {seed} must be non-negative")
    if select_fraction is not None and not 0 < select_fraction < 1:
        raise UsageError(f"--select-fraction {select_fraction} must lie strictly between 0 and 1")
    if patience is not None and patience < 1:
        raise UsageError(f"--patience {patience} must be at least 1")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a directory")
    optimizer_class = _optimizer_class(outer_optimizer)

    problem = cls(dataset=dataset, seed=seed)
    if select_fraction is not None:
        try:
            problem.use_selection_split(select_fraction)
        except ValueError as error:
            raise UsageError(f"--select-fraction: {error}") from None
    lr = problem.default_outer_lr if outer_lr is None else outer_lr
    if method in GRADIENT_METHODS:
        try:
            hg_method = hypergradient_method(problem, method, hvps, neumann_lr)
        except hg.HypergradInputError as error:
            raise UsageError(f"--hvps / --neumann-lr: {error}") from None
    else:
        proposer = _proposer(problem, method, seed)
    config: dict[str, Any] = {
        "task": task,
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "budget_seconds": budget_seconds,
        "max_steps": max_steps,
        "select_fraction": select_fraction,
        "patience": patience,
    }
    if method in GRADIENT_METHODS:
        config.update(
            outer_optimizer=optimizer_class.__name__,
            outer_lr=lr,
            hypergradient=repr(hg_method),
            warm_start=warm_start,
        )

    _warm_up_torch_optim()
    torch.manual_seed(seed)
    budget = Budget(budget_seconds, max_steps)
    trace = Trace(problem, budget, f"{task}/{method}", progress)
    try:
        if method in GRADIENT_METHODS:
            implicit_search(
                problem, hg_method, lambda ps: optimizer_class(ps, lr=lr), budget, trace, warm_start, patience
            )
        else:
            trial_search(problem, proposer, budget, trace, patience)
    finally:
        trace.close()
    wall_time = budget.elapsed()
    result = build_result(problem, trace, config, wall_time)
    write_result(out, result, trace.best_hparams)
    return result


def _neumann_lr(text: str) -> float | str:
    """argparse type: a finite step size > 0, or ``auto``."""
    return text if text == "auto" else positive_float(text)


def _outer_optimizer(text: str) -> str:
    """argparse type: the name of a ``torch.optim`` optimizer."""
    try:
        _optimizer_class(text)
    except UsageError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch.optim optimizer (e.g. Adam, SGD, RMSprop)") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.hpo.run``."""
    datasets = sorted({name for cls in TASKS.values() for name in cls.datasets})
    parser = OneLineParser(prog="applications.hpo.run", description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True, choices=list(TASKS), help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--method", required=True, choices=METHODS, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--budget-seconds", type=positive_float, default=30.0, help="wall-clock budget (default 30)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of split, init and search (default 0)")
    parser.add_argument("--out", type=output_dir, required=True, help="output directory")
    parser.add_argument("--dataset", choices=datasets, help="dataset of the task (default: the task's first)")
    parser.add_argument("--outer-optimizer", type=_outer_optimizer, default="Adam",
                        help="torch.optim class for the hyperparameters")
    parser.add_argument("--outer-lr", type=positive_float, help="its learning rate (default: per task)")
    parser.add_argument("--max-steps", type=positive_int, help="cap on outer steps or trials")
    parser.add_argument("--hvps", type=nonnegative_int, help="CG iteration cap or number of Neumann terms")
    parser.add_argument("--neumann-lr", type=_neumann_lr, help="Neumann step size, or 'auto'")
    parser.add_argument(
        "--cold-start", action="store_true", help="start every inner solve from the initial weights"
    )
    parser.add_argument("--select-fraction", type=positive_float,
                        help="hold out this share (0-1) of the validation split to pick the reported hyperparameters")
    parser.add_argument("--patience", type=positive_int,
                        help="stop after this many steps without a lower selection (else validation) loss")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m applications.hpo.run``; returns the exit status.

    A bad option or a malformed dataset file exits with 2 (``SystemExit``, one line on stderr); a run
    with no finite loss to report returns :data:`RUNTIME_ERROR` after one line on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        result = run(
            args.task,
            args.method,
            args.out,
            budget_seconds=args.budget_seconds,
            seed=args.seed,
            dataset=args.dataset,
            outer_optimizer=args.outer_optimizer,
            outer_lr=args.outer_lr,
            max_steps=args.max_steps,
            hvps=args.hvps,
            neumann_lr=args.neumann_lr,
            warm_start=not args.cold_start,
            progress=not args.no_progress,
            select_fraction=args.select_fraction,
            patience=args.patience,
        )
    except (UsageError, DataError) as error:
        parser.error(str(error))
    best = result["best"]
    if best is None:  # every record non-finite: nothing to report, but the history is on disk
        sys.stderr.write(
            f"{parser.prog}: error: no step of {len(result['history'])} gave a finite "
            f"{'selection' if args.select_fraction is not None else 'validation'} loss (all NaN or Inf); "
            f"expected at least one; history and events in {args.out / RESULT_FILE}\n"
        )
        return RUNTIME_ERROR
    print(
        f"{args.task}/{args.method} seed {args.seed}: {len(result['history'])} steps in "
        f"{time.perf_counter() - start:.1f} s; reported model: val loss {best['val_loss']:.4f}"
        + ("" if best["select_loss"] is None else f", selection loss {best['select_loss']:.4f}")
        + f" (test loss {best['test_loss']:.4f}, accuracy {best['test_accuracy']:.4f}) -> {args.out}"
    )
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: :func:`main`'s exit status (argparse's errors exit with 2 by ``SystemExit``)."""
    return main(argv)


if __name__ == "__main__":
    sys.exit(cli())
