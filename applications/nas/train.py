"""``python -m applications.nas.train``: retrain a derived cell from scratch.

The command itself is :mod:`applications.nas.commands.train`; this module is its entry point.
"""

import sys

from applications.nas.commands.train import build_parser, cli

__all__ = ["build_parser", "cli"]

if __name__ == "__main__":
    sys.exit(cli())
