"""What every NAS command line shares: one-line errors with exit status 2, and the argparse value types
(those of :mod:`applications.cli_checks`, and the NAS-Bench-201 cell string)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from applications.cli_checks import (
    USAGE_ERROR,
    existing_dir,
    existing_dir_text,
    existing_file,
    existing_output_dir,
    existing_path,
    fraction,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    torch_device,
)
from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

__all__ = [
    "USAGE_ERROR", "ArgumentParser", "arch_string", "existing_dir", "existing_dir_text", "existing_file",
    "existing_output_dir", "existing_path", "fraction", "nonnegative_float", "nonnegative_int", "output_dir", "output_file",
    "positive_float", "positive_int", "run_cli", "torch_device",
]


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one line (``prog: error: ...``) and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(USAGE_ERROR)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, prog: str,
            input_errors: tuple[type[BaseException], ...]) -> int:
    """Runs ``main``; an input error becomes one line on stderr and exit status 2, never a traceback."""
    try:
        return main(argv)
    except input_errors as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stderr.write(f"{prog}: error: {message}\n")
        return USAGE_ERROR


def arch_string(text: str) -> str:
    """argparse type: a NAS-Bench-201 architecture string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    try:
        Cell.parse(text)
    except ArchStringError as err:
        raise argparse.ArgumentTypeError(str(err).strip().splitlines()[0]) from None
    return text
