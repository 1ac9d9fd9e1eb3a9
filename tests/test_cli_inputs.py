"""Every option of every command line refuses a bad value the same way: exit status 2, at most three lines on
stderr naming the option and the value, no traceback, and no output folder left behind.

The cases are generated from the parsers (``build_parser()`` of each command): for each action its
``type``, ``choices`` and ``nargs`` say which bad values to try, so a new option is covered without
editing this file. An option that takes free text (no type, no choices) fails the test: give it a type.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import applications.cli_checks as checks
from applications.hpo import compare as hpo_compare
from applications.hpo import run as hpo_run
from applications.hpo.ijcnn1 import command as hpo_ijcnn1
from applications.nas.commands import lookup, report, search, train
from applications.nas.commands.arguments import arch_string

pytestmark = pytest.mark.float32

ROOT = Path(__file__).resolve().parents[1]
GOOD_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
#: A path whose last component starts with this is unreadable and unwritable (simulated: the tests run as root).
LOCKED = "locked"

Make = Callable[[Path], str]  # builds the bad value (and what it needs) under a temporary folder


def _file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return str(path)


def _folder(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


_MISSING: tuple[str, Make] = ("missing", lambda d: str(d / "absent" / "x"))
_A_FOLDER: tuple[str, Make] = ("a folder", lambda d: _folder(d / "a_folder"))
_A_FILE: tuple[str, Make] = ("a file", lambda d: _file(d / "a_file"))
_UNREADABLE_FILE: tuple[str, Make] = ("unreadable file", lambda d: _file(d / f"{LOCKED}.json"))
_UNREADABLE_FOLDER: tuple[str, Make] = ("unreadable folder", lambda d: _folder(d / LOCKED))
_UNDER_A_FILE: tuple[str, Make] = ("under a file", lambda d: str(Path(_file(d / "a_file")) / "sub"))
_UNWRITABLE_PARENT: tuple[str, Make] = ("in an unwritable folder", lambda d: str(Path(_folder(d / LOCKED)) / "new"))


def _texts(*values: str) -> list[tuple[str, Make]]:
    return [(repr(v), lambda d, v=v: v) for v in values]


#: Bad values for each argparse type the commands use.
BAD_VALUES: dict[Callable[[str], object], list[tuple[str, Make]]] = {
    checks.positive_int: _texts("0", "-1", "1.5", "x"),
    checks.nonnegative_int: _texts("-1", "1.5", "x"),
    checks.positive_float: _texts("0", "-1", "nan", "inf", "x"),
    checks.nonnegative_float: _texts("-1", "nan", "inf", "x"),
    checks.fraction: _texts("-0.1", "1", "nan", "x"),
    int: _texts("1.5", "x"),
    float: _texts("x"),
    checks.existing_file: [_MISSING, _A_FOLDER, _UNREADABLE_FILE],
    checks.existing_dir: [_MISSING, _A_FILE, _UNREADABLE_FOLDER],
    checks.existing_dir_text: [_MISSING, _A_FILE, _UNREADABLE_FOLDER],
    checks.existing_output_dir: [_MISSING, _A_FILE, _UNREADABLE_FOLDER],
    checks.existing_path: [_MISSING, _UNREADABLE_FILE, _UNREADABLE_FOLDER],
    checks.output_dir: [_A_FILE, _UNDER_A_FILE, _UNWRITABLE_PARENT, ("unwritable folder", _UNREADABLE_FOLDER[1])],
    checks.output_file: [_A_FOLDER, _UNDER_A_FILE, _UNWRITABLE_PARENT],
    checks.torch_device: _texts("nonsense", "cuda:99"),
    arch_string: _texts("|bogus~0|", "|nor_conv_3x3~0|"),
    train.genotype_string: _texts("Genotype(normal=[])", "|nor_conv_3x3~0|"),
    hpo_run._neumann_lr: _texts("-1", "x"),
    hpo_run._outer_optimizer: _texts("Nope"),
    hpo_ijcnn1._run_names: _texts("nope", ",", "ours,nope"),
    report._setting_names: _texts("alpha lr", "alpha_lr,"),
    search._images_or_all: _texts("0", "-1", "x", "All"),
}


@dataclass(frozen=True)
class Command:
    """A command line, the valid options every case starts from, and the function that would do its work."""

    name: str
    module: ModuleType
    base: Callable[[Path], list[tuple[str | None, str]]]  # (option or None for a positional, value)
    work: str  # attribute of ``module`` stubbed out, so that a wrongly accepted value fails at once
    outputs: tuple[str, ...] = ()  # paths under the temporary folder that must not exist afterwards


def _result_file(d: Path) -> str:
    return _file(d / "run" / "result.json")


COMMANDS = [
    Command("search", search, lambda d: [("--out", str(d / "out")), ("--no-progress", "")], "run_search", ("out",)),
    Command("lookup", lookup, lambda d: [("--arch", GOOD_ARCH)], "BenchmarkTable"),
    Command("train", train, lambda d: [("--arch", GOOD_ARCH), ("--out", str(d / "out"))], "load_dataset", ("out",)),
    Command("report", report, lambda d: [(None, _result_file(d))], "markdown_table"),
    Command("hpo run", hpo_run, lambda d: [("--task", "logreg-l2"), ("--method", "random"), ("--out", str(d / "out")),
                                          ("--no-progress", "")], "run", ("out",)),
    Command("hpo compare", hpo_compare, lambda d: [(None, _folder(d / "runs")), ("--out", str(d / "chart.png"))],
            "load_runs", ("chart.png",)),
    Command("hpo ijcnn1", hpo_ijcnn1, lambda d: [("--synthetic", ""), ("--out", str(d / "out"))], "synthetic", ("out",)),
]


def _takes_a_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))


def _bad_values(action: argparse.Action) -> list[tuple[str, Make]]:
    if action.choices is not None:
        return _texts("not-a-choice")
    if action.type is None:
        pytest.fail(f"{'/'.join(action.option_strings) or action.dest} takes free text; give it an argparse type "
                    "that checks the value (applications/cli_checks.py)")
    if action.type not in BAD_VALUES:
        pytest.fail(f"no bad values known for type {action.type!r} of {action.option_strings or action.dest}; "
                    "add them to BAD_VALUES")
    return BAD_VALUES[action.type]


def _cases() -> Iterator[tuple[Command, argparse.Action, str, Make]]:
    for command in COMMANDS:
        for action in command.module.build_parser()._actions:
            if not _takes_a_value(action):
                continue
            for label, make in _bad_values(action):
                yield command, action, label, make


CASES = list(_cases())


def _argv(command: Command, parser: argparse.ArgumentParser, action: argparse.Action, value: str,
          tmp: Path) -> list[str]:
    """The command's valid base options without ``action`` and its mutually exclusive partners, then the bad value."""
    excluded = {action}
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            excluded.update(group._group_actions)
    by_option = {s: a for a in parser._actions for s in a.option_strings}
    argv: list[str] = []
    positionals: list[str] = []
    for option, base_value in command.base(tmp):
        if option is None:
            if not action.option_strings:
                continue
            positionals.append(base_value)
        elif by_option[option] not in excluded:
            argv += [option, base_value] if base_value else [option]
    if action.option_strings:
        return [*argv, *positionals, action.option_strings[0], value]
    return [*argv, value]


@pytest.fixture
def _locked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths named locked* are refused every access, as chmod 000 would for a user other than root."""
    real = os.access

    def access(path: str | os.PathLike[str], mode: int, *args: object, **kwargs: object) -> bool:
        return False if Path(path).name.startswith(LOCKED) else real(path, mode)

    monkeypatch.setattr(checks.os, "access", access)


class _Accepted(Exception):
    """Raised by the stubbed work function: the bad value got past the checks."""


@pytest.mark.usefixtures("_locked")
@pytest.mark.parametrize(("command", "action", "label", "make"), CASES,
                         ids=[f"{c.name} {a.option_strings[0] if a.option_strings else a.dest}={label}"
                              for c, a, label, _ in CASES])
def test_every_option_refuses_a_bad_value_in_one_line(command: Command, action: argparse.Action, label: str, make: Make,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def accepted(*args: object, **kwargs: object) -> None:
        raise _Accepted(f"{command.name} accepted {label} for {action.option_strings or action.dest}")

    monkeypatch.setattr(command.module, command.work, accepted)
    value = make(tmp_path)
    argv = _argv(command, command.module.build_parser(), action, value, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(command.module.cli(argv))
    assert exit_info.value.code == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and 1 <= len(err.splitlines()) <= 3, err
    name = action.option_strings[0] if action.option_strings else action.dest
    assert any(option in err for option in action.option_strings) or name in err, err
    assert value in err, err
    for output in command.outputs:
        assert not (tmp_path / output).exists(), f"{output} was created"


def test_every_command_is_covered() -> None:
    # The NAS commands are launched through entry points (applications.nas.search, ...) into applications.nas.commands.
    assert {c.module.cli for c in COMMANDS} == {importlib.import_module(name).cli for name in checks.COMMAND_EXTRAS}


# --- output folders (issue item 1) through a real process -------------------------------------------


def test_an_out_path_that_is_a_file_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    import subprocess

    taken = Path(_file(tmp_path / "taken"))
    done = subprocess.run([sys.executable, "-m", "applications.nas.search", "--out", str(taken)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert f"argument --out: {taken} exists and is not a folder" in done.stderr
    assert taken.read_text() == "{}"


# --- missing extras (issue item 3) ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [c for c, needs in checks.COMMAND_EXTRAS.items() if needs])
def test_a_missing_extra_is_one_line_naming_what_to_install(command: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    hidden = checks.COMMAND_EXTRAS[command][0]
    monkeypatch.setitem(sys.modules, hidden, None)  # what find_spec reports for a module that is not installed
    with pytest.raises(SystemExit) as exit_info:
        checks.check_extras(command)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and hidden in err and 'pip install "torch-hypergrad[apps]"' in err


def test_installed_extras_pass_silently(capsys: pytest.CaptureFixture[str]) -> None:
    for command in checks.COMMAND_EXTRAS:
        checks.check_extras(command)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("argv", "orig", "expected"), [
    (["-m", "--x"], ["python", "-m", "applications.nas.search", "--x"], "applications.nas.search"),
    (["-m"], ["python", "-W", "ignore", "-mapplications.hpo.run"], "applications.hpo.run"),
    (["script.py"], ["python", "script.py"], None),
    (["-c"], ["python", "-c", "pass"], None),
])
def test_the_launched_module_is_read_from_the_command_line(argv: list[str], orig: list[str], expected: str | None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig)
    assert checks.launched_module() == expected


def test_a_command_without_tqdm_says_which_extra_to_install(tmp_path: Path) -> None:
    """A real ``python -m`` with tqdm hidden: the check runs before the command imports it."""
    import subprocess

    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['tqdm'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-m", "applications.nas.search", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == ('python -m applications.nas.search: error: needs tqdm, not installed; '
                           'install the apps extra: pip install "torch-hypergrad[apps]"\n')
