"""``python -m applications.nas.search``: architecture search in the NAS-Bench-201 or DARTS space.

The command itself is :mod:`applications.nas.commands.search`; this module is its entry point.
"""

import sys

from applications.nas.commands.search import build_parser, cli

__all__ = ["build_parser", "cli"]

if __name__ == "__main__":
    sys.exit(cli())
