"""Command line: a Markdown table of several searches' results (one row per ``result.json``).

    python -m applications.nas.report runs/table/*/result.json

Columns: method, seed, derived cell, whether it is connected, decisive edges, its NAS-Bench-201 test
accuracies (CIFAR-10, CIFAR-100, ImageNet16-120), the CIFAR-10 accuracy of the cell derived without
``none``, and seconds per epoch; then the mean of each method over its seeds.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from applications.nas.cli import ArgumentParser, run_cli

_SHORT = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "pool"}


def short_arch(arch: str) -> str:
    """The cell string with short operation names (``c3`` for ``nor_conv_3x3``, ...), for tables."""
    for name, short in _SHORT.items():
        arch = arch.replace(name, short)
    return arch


def _accuracies(entry: dict[str, Any] | None) -> tuple[float, float, float] | None:
    if entry is None:
        return None
    return entry["cifar10_test"], entry["cifar100_test"], entry["imagenet16_120_test"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Rows per search, then per-method means of the benchmark accuracies and timing."""
    lines = ["| method | seed | derived cell | connected | decisive edges | CIFAR-10 | CIFAR-100 | ImageNet16-120 "
             "| CIFAR-10 without none | s/epoch |", "|" + " --- |" * 10]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: (r["method"], r["seed"])):
        by_method.setdefault(r["method"], []).append(r)
        bench = r.get("benchmark") or {}
        acc = _accuracies(bench.get("arch"))
        without = _accuracies(bench.get("arch_argmax_without_none"))
        cell = short_arch(r["arch"]).replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {r['method']} | {r['seed']} | `{cell}` | {'yes' if r['connected'] else 'NO'} "
                     f"| {r['decisive_edges']}/6 | {_fmt(acc and acc[0])} | {_fmt(acc and acc[1])} "
                     f"| {_fmt(acc and acc[2])} | {_fmt(without and without[0])} | {r['seconds_per_epoch']:.1f} |")
    lines += ["", "| method | searches | CIFAR-10 | CIFAR-100 | ImageNet16-120 | CIFAR-10 without none | s/epoch |",
              "|" + " --- |" * 7]
    for method, rows in by_method.items():
        accs = [a for a in (_accuracies((r.get("benchmark") or {}).get("arch")) for r in rows) if a]
        withouts = [a for a in (_accuracies((r.get("benchmark") or {}).get("arch_argmax_without_none"))
                                for r in rows) if a]

        def mean_sd(values: list[float]) -> str:
            if not values:
                return "-"
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.2f} ± {sd:.2f}"

        lines.append(f"| {method} | {len(rows)} | {mean_sd([a[0] for a in accs])} | {mean_sd([a[1] for a in accs])} "
                     f"| {mean_sd([a[2] for a in accs])} | {mean_sd([a[0] for a in withouts])} "
                     f"| {statistics.mean(r['seconds_per_epoch'] for r in rows):.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m applications.nas.report",
                            description="Tabulate the result.json files of several searches (Markdown).")
    parser.add_argument("results", nargs="+", type=Path, help="result.json files (or search folders)")
    args = parser.parse_args(argv)
    results = []
    for path in args.results:
        file = path / "result.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found (expected a search's result.json)")
        try:
            results.append(json.loads(file.read_text()))
        except json.JSONDecodeError:
            raise ValueError(f"{file} is not JSON") from None
    print(markdown_table(results))
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.report", (FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(cli())
