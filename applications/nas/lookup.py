"""``python -m applications.nas.lookup``: the NAS-Bench-201 accuracies of a cell.

The command itself is :mod:`applications.nas.commands.lookup`; this module is its entry point.
"""

import sys

from applications.nas.commands.lookup import build_parser, cli

__all__ = ["build_parser", "cli"]

if __name__ == "__main__":
    sys.exit(cli())
