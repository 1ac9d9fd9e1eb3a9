"""Every command the README and docs/ show still parses as written, and the README's example runs.

Commands are the indented lines of README.md and docs/*.md that run ``python -m MODULE`` (with or
without ``.venv/bin/`` and environment variables in front, continued by a trailing backslash). Each is
handed to its module's own ``build_parser()``: every option must exist, every choice and number must
be accepted. What depends on the machine or on earlier runs (files and folders the command reads or
writes, a CUDA device) is not checked here; ``tests/test_cli_inputs.py`` checks those types.
``[...]`` marks optional arguments in the docs (kept, without the brackets); a shell variable of a
``for VAR in A B ...`` loop in the same block takes the loop's first value. Modules without a
``build_parser()`` (pytest, the benchmark scripts) must at least exist. ``make TARGET`` lines must
name a Makefile target.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

import applications.cli_checks as checks

pytestmark = pytest.mark.float32

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Argument types whose verdict depends on this machine's files or devices, not on the command.
MACHINE_TYPES = {checks.existing_file, checks.existing_dir, checks.existing_dir_text, checks.existing_path,
                 checks.existing_output_dir, checks.output_dir, checks.output_file, checks.torch_device}
_COMMAND = re.compile(r"^(?:\w+=\S+\s+)*(?:\.venv/bin/)?python\s+-m\s+(\S+)(.*)$")


def _blocks(text: str) -> list[list[str]]:
    """Indented code blocks (4 spaces, outside lists) and fenced blocks, as lists of lines."""
    blocks: list[list[str]] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            if not fenced:
                blocks.append(current)
                current = []
            continue
        if fenced or line.startswith("    "):
            current.append(line.strip())
        elif current and line.strip():
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _commands() -> list[tuple[str, str, list[str]]]:
    """(where, module, argv) for every ``python -m`` command, and (where, "make", [target]) for ``make``."""
    found = []
    for doc in DOCS:
        for block in _blocks(doc.read_text()):
            loops = {var: values.split()[0] for var, values in re.findall(r"for (\w+) in ([^;]+);", " ".join(block))}
            joined = "\n".join(block).replace("\\\n", " ")
            for line in joined.splitlines():
                line = line.strip()
                match = re.match(r"^make\s+(\w+)", line)
                if match:
                    found.append((f"{doc.name}: {line}", "make", [match.group(1)]))
                    continue
                match = _COMMAND.match(re.sub(r"^for .*?; do\s*", "", line))
                if not match:
                    continue
                args = re.sub(r"\$(\w+)", lambda m, loops=loops: loops.get(m.group(1), m.group(0)), match.group(2))
                args = re.sub(r"\[([^\]|]*)\]", r"\1", args)  # optional arguments, shown in brackets
                args = re.sub(r";\s*(done;?\s*)*$", "", args)
                found.append((f"{doc.name}: {line[:100]}", match.group(1), shlex.split(args, comments=True)))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands_of_every_command_line():
    modules = {module for _, module, _ in COMMANDS}
    assert {"applications.nas.search", "applications.hpo.run", "applications.hpo.compare",
            "benchmarks.bench_core"} <= modules, modules


def _machine_independent(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if action.type in MACHINE_TYPES:
            action.type = None
    return parser


@pytest.mark.parametrize(("module", "argv"), [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(module, argv, capsys):
    if module == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
        assert argv[0] in targets
        return
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if not module.startswith("applications."):
        return
    parser = _machine_independent(importlib.import_module(module).build_parser())
    try:
        parser.parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"python -m {module} {shlex.join(argv)}: exit {error.code}: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("module", sorted({c[1] for c in COMMANDS if c[1].startswith("applications.")}))
def test_help_of_every_documented_command_exits_cleanly(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_readme_python_example_runs(capsys):
    """The example prints the hypergradient and the solve's diagnostics: converged within its iteration
    budget to a residual below its tolerance. (5 unknowns take 5 CG iterations in exact arithmetic; the
    example's unseeded float32 data sometimes needs a few more, so the bound is the budget, 50.)"""
    text = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0].startswith("tensor(")
    converged, iterations, residual = printed[-3:]
    assert converged == "True" and 1 <= int(iterations) <= 50 and float(residual) < 1e-8
