"""Command line: NAS-Bench-201 accuracies of a cell.

    python -m applications.nas.lookup \\
        --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
    python -m applications.nas.lookup --index 6111 --table OTHER_TABLE.csv

The table shipped with the package is the default; ``--table`` reads another in its format (plain or gzipped).

Exit status: 0 found, 1 not in the table, 2 bad input (one-line message).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from applications.nas.benchmark.table import BenchmarkTable, TableError, lookup_official, shipped_table
from applications.nas.commands.arguments import ArgumentParser, arch_string, existing_file, nonnegative_int, run_cli
from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

NOT_FOUND = 1


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.nas.lookup``."""
    parser = ArgumentParser(prog="python -m applications.nas.lookup",
                            description="Look up the published NAS-Bench-201 accuracies of a cell.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", type=arch_string,
                       help="official architecture string, |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    which.add_argument("--index", type=nonnegative_int, help="official NAS-Bench-201 index (0..15624)")
    parser.add_argument("--table", type=existing_file, default=None,
                        help="accuracy CSV, plain or gzipped (columns index, arch, cifar10_valid, cifar10_test, "
                             "cifar100_test, imagenet16_120_test) [the table of all 15,625 cells shipped with the package]")
    parser.add_argument("--nats-file", type=existing_file,
                        help="official NATS-Bench topology file, used instead when nats_bench is installed")
    parser.add_argument("--json", action="store_true", help="print the entry as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    cell = Cell.parse(args.arch) if args.arch is not None else None
    entry = lookup_official(cell, args.nats_file) if cell is not None and args.nats_file is not None else None
    if entry is None:
        table = BenchmarkTable.from_csv(args.table) if args.table is not None else shipped_table()
        entry = table.lookup(cell) if cell is not None else table.by_index(args.index)
    if entry is None:
        print(f"not in the table: {cell if cell is not None else f'index {args.index}'}")
        return NOT_FOUND
    connected = Cell.parse(entry.arch).is_connected()
    if args.json:
        print(json.dumps({**entry.to_dict(), "connected": connected}))
        return 0
    print(f"index {entry.index}: {entry.arch}")
    if not connected:
        print("disconnected cell: no path of non-none edges from input to output (scores at chance)")
    print(f"CIFAR-10 valid {entry.cifar10_valid:.2f}  CIFAR-10 test {entry.cifar10_test:.2f}  "
          f"CIFAR-100 test {entry.cifar100_test:.2f}  ImageNet16-120 test {entry.imagenet16_120_test:.2f}  (%)")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.lookup", (ArchStringError, TableError))


if __name__ == "__main__":
    sys.exit(cli())
