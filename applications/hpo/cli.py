"""What the HPO command lines share: an argument parser whose errors fit on one line."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that reports a bad option as ``PROG: error: MESSAGE`` on one line
    (no usage block, no traceback) and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")
