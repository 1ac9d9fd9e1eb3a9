"""``python -m applications.nas.report``: a Markdown table of several searches' results.

The command itself is :mod:`applications.nas.commands.report`; this module is its entry point.
"""

import sys

from applications.nas.commands.report import build_parser, cli

__all__ = ["build_parser", "cli"]

if __name__ == "__main__":
    sys.exit(cli())
