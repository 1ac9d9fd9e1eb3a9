"""Command line: compare HPO runs on one chart and in one table.

    python -m applications.hpo.compare runs/hpo/logreg-l2 --out docs/img/hpo_logreg-l2.png \\
        [--table table.md] [--at SECONDS]

Each path is a run directory (holding ``result.json``) or a folder searched recursively for them.
The chart draws the best validation loss found so far (the selection loss, for runs that held out a
selection split) against charged wall time, and beside it the test loss of that model, one colour per
method and guard, one line per seed. The table compares methods at equal wall time ``--at`` (default:
the smallest budget among the runs): the test metrics of the model each method reports by then, and
the time each method needs to reach the best validation loss random search found with the same seed
by then (to 0.1%).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cli_checks import existing_path, output_file, positive_float
from .cli import OneLineParser
from .results import RESULT_FILE

Run = dict[str, Any]
#: Reference method of the "time to reach" column.
REFERENCE = "random"


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Read every ``result.json`` at or under ``paths``.

    Raises:
        FileNotFoundError: If a path does not exist or holds no result.
    """
    runs: list[Run] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = [path] if path.is_file() else sorted(path.rglob(RESULT_FILE))
        if not files:
            raise FileNotFoundError(f"no {RESULT_FILE} under {path}")
        runs.extend(json.loads(file.read_text()) for file in files)
    return runs


def score(record: dict[str, Any]) -> float:
    """What picks the reported model: the selection loss where the run held out a selection split,
    else the validation loss (as :attr:`.history.Record.score`)."""
    select = record.get("select_loss")
    return record["val_loss"] if select is None else select


def label(run: Run) -> str:
    """The method of a run, with its guard (selection split, patience) when it had one."""
    guard = []
    if run.get("select_fraction") is not None:
        guard.append(f"select {run['select_fraction']:g}")
    if run.get("patience") is not None:
        guard.append(f"patience {run['patience']}")
    return run["method"] + (f" ({', '.join(guard)})" if guard else "")


def best_until(run: Run, seconds: float) -> dict[str, Any] | None:
    """The reported model by ``seconds``: the record with the lowest :func:`score` among those
    charged at most ``seconds``."""
    records = [r for r in run["history"] if r["time"] <= seconds and math.isfinite(score(r))]
    return min(records, key=score, default=None)


def time_to_reach(run: Run, target: float, rtol: float = 1e-3) -> float | None:
    """Charged seconds until the run first records a validation loss within ``rtol`` of ``target``.

    The tolerance keeps two searches that found the same optimum of a shared scalar from counting as
    missing each other over the fourth digit. Returns None if the run never gets there.
    """
    bound = target * (1.0 + rtol)
    return next((r["time"] for r in run["history"] if r["val_loss"] <= bound), None)


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summary_table(runs: list[Run], at: float) -> str:
    """A Markdown table comparing the methods of each task at ``at`` charged seconds.

    Columns: seeds, steps (outer steps or trials) by then, the validation loss of the reported model
    (:func:`best_until`) and, where some run held out a selection split, its selection loss, the test
    loss and accuracy of that model (mean ± standard deviation over seeds), the time to reach random
    search's best validation loss of the same seed (mean over the seeds that reach it, and how many do), and,
    where the task reports them, its task metrics at the best record.
    """
    groups: dict[tuple[str, str], dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[(run["task"], run["dataset"])][label(run)].append(run)
    task_keys = [k for k in ("precision_at_k", "auc") if any(k in (r["best"] or {}) for r in runs)]
    has_select = any(run.get("select_fraction") is not None for run in runs)
    lines = [
        "| task | method | seeds | steps | val loss | " + ("selection loss | " if has_select else "")
        + "test loss | test accuracy | time to random's best (s) |" + "".join(f" {k} |" for k in task_keys),
        "|" + " --- |" * (8 + has_select + len(task_keys)),
    ]
    for (task, dataset), methods in sorted(groups.items()):
        targets = {}
        for run in methods.get(REFERENCE, []):
            best = best_until(run, at)
            if best is not None:
                targets[run["seed"]] = best["val_loss"]
        for method, members in sorted(methods.items()):
            bests = [b for b in (best_until(run, at) for run in members) if b is not None]
            steps = [sum(r["time"] <= at for r in run["history"]) for run in members]
            reached = [
                time_to_reach(run, targets[run["seed"]]) for run in members if run["seed"] in targets
            ]
            hits = [t for t in reached if t is not None]
            reach = f"{_mean_std(hits, 1)} ({len(hits)}/{len(reached)})" if reached else "—"
            extras = [_mean_std([b[k] for b in bests if k in b], 3) for k in task_keys]
            selects = [b["select_loss"] for b in bests if b.get("select_loss") is not None]
            lines.append(
                f"| {task} ({dataset}) | {method} | {len(members)} | {_mean_std(steps, 0)} "
                f"| {_mean_std([b['val_loss'] for b in bests], 4)} "
                + (f"| {_mean_std(selects, 4)} " if has_select else "")
                + f"| {_mean_std([b['test_loss'] for b in bests], 4)} "
                f"| {_mean_std([b['test_accuracy'] for b in bests], 4)} | {reach} |" + "".join(f" {e} |" for e in extras)
            )
    return "\n".join(lines) + "\n"


def _running_best(run: Run) -> tuple[list[float], list[float], list[float]]:
    """Times, best :func:`score` so far, and the test loss of that best model, per record."""
    times, best_val, its_test = [], [], []
    for record in run["history"]:
        if not best_val or score(record) < best_val[-1]:
            best_val.append(score(record))
            its_test.append(record["test_loss"])
        else:
            best_val.append(best_val[-1])
            its_test.append(its_test[-1])
        times.append(record["time"])
    return times, best_val, its_test


def plot(runs: list[Run], out: Path, at: float | None = None) -> None:
    """Draw, against charged wall time, the best validation loss so far (left) and the test loss of
    that model (right), and save the chart to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({label(run) for run in runs})
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(methods)}
    figure, (val_axes, test_axes) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    labelled: set[str] = set()
    for run in sorted(runs, key=lambda r: (label(r), r["seed"])):
        times, best_val, its_test = _running_best(run)
        method = label(run)
        colour = colours[method]
        val_axes.step(times, best_val, where="post", color=colour, alpha=0.8,
                      label=None if method in labelled else method)
        labelled.add(method)
        test_axes.step(times, its_test, where="post", color=colour, alpha=0.8)
    tasks = sorted({f"{run['task']} ({run['dataset']})" for run in runs})
    seeds = len({run["seed"] for run in runs})
    figure.suptitle(", ".join(tasks) + f": {seeds} seed{'s' if seeds > 1 else ''} per method")
    val_axes.set_ylabel("best validation (or selection) loss so far")
    test_axes.set_ylabel("test loss of that model")
    for axes in (val_axes, test_axes):
        if at is not None:
            axes.axvline(at, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("wall time charged to the budget (s)")
        axes.set_yscale("log")
        axes.grid(True, which="both", alpha=0.3)
    val_axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.hpo.compare``."""
    parser = OneLineParser(prog="applications.hpo.compare", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=existing_path, help="run directories or folders of them")
    parser.add_argument("--out", type=output_file, required=True, help="PNG file of the chart")
    parser.add_argument("--table", type=output_file, help="also write the Markdown table here")
    parser.add_argument("--at", type=positive_float, help="equal wall time of the table (default: smallest budget)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m applications.hpo.compare``; returns the exit status (a bad option exits with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out {str(args.out)!r} must end in .png")
    try:
        runs = load_runs(args.paths)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        parser.error(str(error))
    at = args.at if args.at is not None else min(run["budget_seconds"] for run in runs)
    plot(runs, args.out, at)
    table = summary_table(runs, at)
    if args.table is not None:
        args.table.write_text(table)
    print(f"at {at:g} s:\n{table}", end="")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: :func:`main`'s exit status (argparse's errors exit with 2 by ``SystemExit``)."""
    return main(argv)


if __name__ == "__main__":
    sys.exit(cli())
