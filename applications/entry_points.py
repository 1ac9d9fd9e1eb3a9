"""Console entry points installed with the package: ``hypergrad-nas COMMAND`` and ``hypergrad-hpo COMMAND``.

Each command is the module that ``python -m`` runs (the same options, ``--help`` and one-line errors);
this module only picks it by name, and imports nothing else, so ``hypergrad-nas --help`` is instant.

    hypergrad-nas search|lookup|train|report [OPTIONS]      = python -m applications.nas.COMMAND
    hypergrad-hpo run|compare|ijcnn1 [OPTIONS]              = python -m applications.hpo.COMMAND
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "hypergrad-nas": {
        "search": ("applications.nas.search", "architecture search in the NAS-Bench-201 or DARTS space"),
        "lookup": ("applications.nas.lookup", "the NAS-Bench-201 accuracies of a cell"),
        "train": ("applications.nas.train", "retrain a derived cell from scratch"),
        "report": ("applications.nas.report", "a Markdown table of several searches' results"),
    },
    "hypergrad-hpo": {
        "run": ("applications.hpo.run", "one hyperparameter search (implicit hypergradients or a black-box baseline)"),
        "compare": ("applications.hpo.compare", "chart and table over several runs"),
        "ijcnn1": ("applications.hpo.ijcnn1", "the ijcnn1 task of benchopt's bilevel benchmark, each lever on or off"),
    },
}
"""Program name -> command -> (the module ``python -m`` runs, one line of help)."""

USAGE_ERROR = 2


def _usage(prog: str) -> str:
    lines = [f"usage: {prog} COMMAND [OPTIONS]   ({prog} COMMAND --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS[prog].items()]
    return "\n".join(lines) + "\n"


def dispatch(prog: str, argv: Sequence[str] | None = None) -> int:
    """Runs ``prog``'s command named by ``argv[0]`` with the rest of ``argv``; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage(prog))
        return 0
    commands = COMMANDS[prog]
    if not argv or argv[0] not in commands:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        sys.stderr.write(f"{prog}: error: {given}; expected one of {', '.join(commands)} (see {prog} --help)\n")
        return USAGE_ERROR
    return importlib.import_module(commands[argv[0]][0]).cli(argv[1:])


def nas(argv: Sequence[str] | None = None) -> int:
    """``hypergrad-nas search|lookup|train|report``."""
    return dispatch("hypergrad-nas", argv)


def hpo(argv: Sequence[str] | None = None) -> int:
    """``hypergrad-hpo run|compare|ijcnn1``."""
    return dispatch("hypergrad-hpo", argv)
