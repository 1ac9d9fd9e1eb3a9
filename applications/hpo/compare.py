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
import io
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
from .results import RESULT_FILE, atomic_write

Run = dict[str, Any]
#: Reference method of the "time to reach" column.
REFERENCE = "random"
#: What :func:`summary_table` and :func:`plot` read of a run, and of each record of its history.
RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "task": str, "dataset": str, "method": str, "seed": int, "budget_seconds": (int, float), "history": list,
}
RECORD_FIELDS = ("time", "val_loss", "test_loss", "test_accuracy")


class RunFileError(ValueError):
    """A ``result.json`` that cannot be read or is not what :mod:`.run` writes; the message names the file."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_run(run: object, file: Path) -> Run:
    """``run`` if it has what a comparison reads (:data:`RUN_FIELDS`, numeric :data:`RECORD_FIELDS` in
    every record, ``best`` a record or null), else a one-line :class:`RunFileError` naming ``file``."""
    expected = f"expected a {RESULT_FILE} written by applications.hpo.run"
    if not isinstance(run, dict):
        raise RunFileError(f"{file} holds a JSON {type(run).__name__}; {expected} (a JSON object)")
    for key, kind in RUN_FIELDS.items():
        if key not in run:
            raise RunFileError(f"{file} has no {key!r}; {expected}")
        value = run[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunFileError(f"{file}: {key!r} is {value!r:.40}; {expected}")
        if key == "budget_seconds" and not 0 < value < math.inf:
            raise RunFileError(f"{file}: 'budget_seconds' is {value!r}; {expected} (a finite number > 0)")
    for i, record in enumerate(run["history"]):
        bad = [k for k in RECORD_FIELDS if not _is_number(record.get(k))] if isinstance(record, dict) else ["a record"]
        select = record.get("select_loss") if isinstance(record, dict) else None
        if bad or not (select is None or _is_number(select)):
            raise RunFileError(f"{file}: history[{i}] lacks a number for {', '.join(bad) or 'select_loss'}; {expected}")
    if not (run.get("best") is None or isinstance(run["best"], dict)):
        raise RunFileError(f"{file}: 'best' is {run['best']!r:.40}; {expected} (a record or null)")
    return run


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Read every ``result.json`` at or under ``paths``.

    Raises:
        FileNotFoundError: If a path does not exist or holds no result.
        RunFileError: If a result cannot be read, is not JSON, or lacks what a comparison reads.
    """
    runs: list[Run] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = [path] if path.is_file() else sorted(path.rglob(RESULT_FILE))
        if not files:
            raise FileNotFoundError(f"no {RESULT_FILE} under {path}")
        for file in files:
            try:
                run = json.loads(file.read_bytes())
            except (OSError, ValueError) as error:  # unreadable, a folder, not UTF-8, not JSON
                reason = (error.strerror if isinstance(error, OSError) and error.strerror
                          else str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
                raise RunFileError(f"{file} is not readable JSON ({reason}); expected a {RESULT_FILE} written "
                                   "by applications.hpo.run") from None
            runs.append(check_run(run, file))
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
    times: list[float] = []
    best_val: list[float] = []
    its_test: list[float] = []
    for record in run["history"]:
        # A NaN score never becomes the best (as in best_until); before any finite one the line is NaN (not drawn).
        if math.isfinite(score(record)) and (not best_val or not score(record) >= best_val[-1]):
            best_val.append(score(record))
            its_test.append(record["test_loss"])
        else:
            best_val.append(best_val[-1] if best_val else math.nan)
            its_test.append(its_test[-1] if its_test else math.nan)
        times.append(record["time"])
    return times, best_val, its_test


def plot(runs: list[Run], out: Path, at: float | None = None) -> None:
    """Draw, against charged wall time, the best validation loss so far (left) and the test loss of
    that model (right), and save the chart to ``out`` (atomically: the old file or the whole new one).

    The loss axes are logarithmic unless no run has a finite positive loss to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({label(run) for run in runs})
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(methods)}
    figure, (val_axes, test_axes) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    labelled: set[str] = set()
    drawn: list[float] = []
    for run in sorted(runs, key=lambda r: (label(r), r["seed"])):
        times, best_val, its_test = _running_best(run)
        drawn += best_val + its_test
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
        if any(math.isfinite(v) and v > 0 for v in drawn):  # a log axis with nothing positive fails to draw
            axes.set_yscale("log")
        axes.grid(True, which="both", alpha=0.3)
    val_axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    atomic_write(out, lambda handle: handle.write(image.getvalue()))


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.hpo.compare``."""
    parser = OneLineParser(prog="applications.hpo.compare", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=existing_path, help="run directories or folders of them")
    parser.add_argument("--out", type=output_file, required=True, help="PNG file of the chart")
    parser.add_argument("--table", type=output_file, help="also write the Markdown table here")
    parser.add_argument("--at", type=positive_float, help="equal wall time of the table (default: smallest budget)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m applications.hpo.compare``; returns the exit status (a bad option, or a
    result.json that is unreadable or not one :mod:`.run` writes, exits with 2 before anything is written)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out {str(args.out)!r} must end in .png")
    try:
        runs = load_runs(args.paths)
    except (FileNotFoundError, RunFileError) as error:
        parser.error(str(error))
    at = args.at if args.at is not None else min(run["budget_seconds"] for run in runs)
    table = summary_table(runs, at)  # before any file is written
    plot(runs, args.out, at)
    if args.table is not None:
        atomic_write(args.table, lambda handle: handle.write(table.encode()))
    print(f"at {at:g} s:\n{table}", end="")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: :func:`main`'s exit status (argparse's errors exit with 2 by ``SystemExit``)."""
    return main(argv)


if __name__ == "__main__":
    sys.exit(cli())
