"""Command line: a Markdown table of several searches' results (one row per ``result.json``).

    python -m applications.nas.report runs/table/*/result.json [--collapse-plot collapse.png] [--random-baseline]

Columns: method, seed, derived cell, whether it is connected, decisive edges, its NAS-Bench-201 test
accuracies (CIFAR-10, CIFAR-100, ImageNet16-120) and CIFAR-10 percentile among all cells, the CIFAR-10
accuracy of the cell derived without ``none``, the collapse indicators (``skip_connect``'s share of the
derived cell and its mean softmax weight), and seconds per step; then each method's mean ± standard
deviation over its seeds. ``--random-baseline`` adds what picking cells at random from the table gives
(mean, median, expected best of n picks); ``--collapse-plot`` draws the collapse indicators per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from applications.nas.benchmark.table import TEST_COLUMNS, BenchmarkTable, TableError, expected_best_of, shipped_table
from applications.nas.commands.arguments import ArgumentParser, existing_file, existing_path, output_file, run_cli
from applications.nas.commands.result_file import read_search_result
from applications.nas.spaces.nb201.genotype import OPERATIONS

_SHORT = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "pool"}
_SKIP = OPERATIONS.index("skip_connect")
RANDOM_PICKS = (1, 3, 10, 100)


def short_arch(arch: str) -> str:
    """The cell string with short operation names (``c3`` for ``nor_conv_3x3``, ...), for tables."""
    for name, short in _SHORT.items():
        arch = arch.replace(name, short)
    return arch


def _accuracies(entry: dict[str, Any] | None) -> tuple[float, float, float] | None:
    if entry is None:
        return None
    return entry["cifar10_test"], entry["cifar100_test"], entry["imagenet16_120_test"]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def skip_share(arch: str) -> float:
    """The fraction of the cell's six edges that are ``skip_connect``."""
    ops = [part.split("~")[0] for part in arch.replace("+", "").split("|") if part]
    return ops.count("skip_connect") / len(ops)


def skip_weight(result: dict[str, Any]) -> float | None:
    """``skip_connect``'s softmax weight averaged over the edges (NAS-Bench-201 results only)."""
    probs = result.get("alpha_softmax")
    if not isinstance(probs, list) or result.get("decisive_edges") is None:  # random-ws never moves alpha
        return None
    return sum(row[_SKIP] for row in probs) / len(probs)


def label(result: dict[str, Any], group_by: Sequence[str] = ()) -> str:
    """The method, followed by the values of the ``group_by`` settings from the search's ``config``."""
    config = result.get("config") or {}
    settings = ", ".join(f"{key}={config.get(key)}" for key in group_by)
    return f"{result['method']} ({settings})" if settings else result["method"]


def markdown_table(results: list[dict[str, Any]], group_by: Sequence[str] = ()) -> str:
    """Rows per search, then means and standard deviations over the seeds of each method (and of each
    combination of the ``group_by`` settings, for an ablation)."""
    lines = ["| method | seed | derived cell | connected | decisive edges | CIFAR-10 | CIFAR-100 | ImageNet16-120 "
             "| CIFAR-10 percentile | CIFAR-10 without none | skip share | skip softmax | s/step |",
             "|" + " --- |" * 13]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: (label(r, group_by), r["seed"])):
        by_method.setdefault(label(r, group_by), []).append(r)
        bench = r.get("benchmark") or {}
        acc = _accuracies(bench.get("arch"))
        pct = ((bench.get("arch") or {}).get("percentile") or {}).get("cifar10_test")
        without = _accuracies(bench.get("arch_argmax_without_none"))
        cell = short_arch(r["arch"]).replace("|", "\\|")  # a bare | would end the table cell
        decisive = "-" if r.get("decisive_edges") is None else f"{r['decisive_edges']}/{r.get('edges', 6)}"
        lines.append(f"| {label(r, group_by)} | {r['seed']} | `{cell}` | {'yes' if r['connected'] else 'NO'} "
                     f"| {decisive} | {_fmt(acc and acc[0])} | {_fmt(acc and acc[1])} "
                     f"| {_fmt(acc and acc[2])} | {_fmt(pct, 1)} | {_fmt(without and without[0])} "
                     f"| {skip_share(r['arch']):.2f} | {_fmt(skip_weight(r))} | {r['seconds_per_step']:.3f} |")
    lines += ["", "| method | searches | CIFAR-10 | CIFAR-100 | ImageNet16-120 | CIFAR-10 percentile | decisive edges "
              "| connected | skip share | s/step |", "|" + " --- |" * 10]
    for method, rows in by_method.items():
        entries = [(r.get("benchmark") or {}).get("arch") for r in rows]
        accs = [a for a in (_accuracies(e) for e in entries) if a]
        pcts = [e["percentile"]["cifar10_test"] for e in entries if e and "percentile" in e]
        decisive = [float(r["decisive_edges"]) for r in rows if r.get("decisive_edges") is not None]
        lines.append(f"| {method} | {len(rows)} | {_mean_sd([a[0] for a in accs])} | {_mean_sd([a[1] for a in accs])} "
                     f"| {_mean_sd([a[2] for a in accs])} | {_mean_sd(pcts, 1)} | {_mean_sd(decisive, 1)} "
                     f"| {sum(bool(r['connected']) for r in rows)}/{len(rows)} "
                     f"| {_mean_sd([skip_share(r['arch']) for r in rows])} "
                     f"| {statistics.mean(r['seconds_per_step'] for r in rows):.3f} |")
    return "\n".join(lines)


def random_baseline_table(table: BenchmarkTable, picks: Sequence[int] = RANDOM_PICKS) -> str:
    """What a random pick from the table scores: mean, median and the expected best of n uniform picks.

    The expected best of n is what a user gets who trains n random cells fully and keeps the best: an
    upper bound for random search at n full trainings, not a search on the same budget.
    """
    columns = {c: table.accuracies(c) for c in TEST_COLUMNS}
    lines = [f"| random cells ({len(table):,} in the table) | CIFAR-10 | CIFAR-100 | ImageNet16-120 |",
             "|" + " --- |" * 4,
             "| mean (one pick) | " + " | ".join(f"{statistics.mean(v):.2f}" for v in columns.values()) + " |",
             "| median | " + " | ".join(f"{statistics.median(v):.2f}" for v in columns.values()) + " |"]
    for n in picks:
        if n > 1:
            lines.append(f"| expected best of {n} | "
                         + " | ".join(f"{expected_best_of(v, n):.2f}" for v in columns.values()) + " |")
    return "\n".join(lines)


def _history(result: dict[str, Any], file: Path) -> list[dict[str, Any]]:
    log = Path((result.get("files") or {}).get("log.jsonl", file.parent / "log.jsonl"))
    if not log.is_file():
        log = file.parent / "log.jsonl"  # the folder was moved since the search wrote its paths
    if not log.is_file():
        raise FileNotFoundError(f"{log} not found (--collapse-plot needs each search's log.jsonl)")
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.nas.report``."""
    parser = ArgumentParser(prog="python -m applications.nas.report",
                            description="Tabulate the result.json files of several searches (Markdown).")
    parser.add_argument("results", nargs="+", type=existing_path, help="result.json files (or search folders)")
    parser.add_argument("--random-baseline", action="store_true",
                        help="add the random-pick baseline from the benchmark table (mean, median, expected best of n)")
    parser.add_argument("--table", type=existing_file, default=None,
                        help="benchmark table (CSV, plain or gzipped) for --random-baseline [the table shipped with "
                             "the package]")
    parser.add_argument("--collapse-plot", type=output_file, metavar="PNG",
                        help="draw skip_connect's mean softmax weight and share of the derived cell per epoch, "
                             "one panel per method (NAS-Bench-201 searches)")
    parser.add_argument("--group-by", type=_setting_names, default=(), metavar="SETTING[,SETTING...]",
                        help="for an ablation: average per method and per value of these search settings (names "
                             "as in result.json's config, e.g. alpha_lr,warmup_epochs) [method only]")
    return parser


def _setting_names(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated setting names."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(name.isidentifier() for name in names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of setting names")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.collapse_plot is not None and not args.collapse_plot.parent.is_dir():
        raise FileNotFoundError(f"--collapse-plot {args.collapse_plot}: folder {args.collapse_plot.parent} not found")
    table: BenchmarkTable | None = None
    if args.random_baseline:
        table = BenchmarkTable.from_csv(args.table) if args.table is not None else shipped_table()
    results: list[tuple[Path, dict[str, Any]]] = []
    for path in args.results:
        file = path / "result.json" if path.is_dir() else path
        results.append((file, read_search_result(file)))
    for file, r in results:
        missing = [name for name in args.group_by if name not in (r.get("config") or {})]
        if missing:
            raise ValueError(f"--group-by {','.join(missing)}: not a setting in {file}'s config")
    print(markdown_table([r for _, r in results], args.group_by))
    if table is not None:
        print()
        print(random_baseline_table(table))
    if args.collapse_plot is not None:
        from applications.nas.commands.plots import plot_collapse  # matplotlib only when a plot is asked for

        runs: dict[str, list[tuple[int, list[dict[str, Any]]]]] = {}
        for file, r in results:
            if r.get("space", "nb201") == "nb201" and r.get("decisive_edges") is not None:
                runs.setdefault(r["method"], []).append((r["seed"], _history(r, file)))
        if not runs:
            raise ValueError("--collapse-plot: none of the results is a NAS-Bench-201 search that moved alpha")
        plot_collapse(runs, args.collapse_plot)
        print(f"\ncollapse indicators: {args.collapse_plot}")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.report", (FileNotFoundError, ValueError, TableError))


if __name__ == "__main__":
    sys.exit(cli())
