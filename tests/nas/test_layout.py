"""The layout of ``applications/nas``: one folder per part, no import cycle, the command lines where they were.

The import graph is read from the source (every ``import`` statement, also those inside functions and
under ``TYPE_CHECKING``), so a cycle is caught even where Python would happen to resolve it at run time.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAS = ROOT / "applications" / "nas"
PACKAGE = "applications.nas"

#: The parts in the order they may import each other: a module imports only from its own part or an
#: earlier one (the entry points ``applications.nas.<command>`` come last).
PARTS = ("common", "spaces", "benchmark", "searching", "retraining", "commands")
COMMANDS = ("search", "lookup", "train", "report")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(NAS.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The ``applications.nas`` modules that module ``name`` imports (a package only if no module is named)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target == PACKAGE or target.startswith(PACKAGE + "."))
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _part(name: str) -> int:
    """The position of ``name``'s part in :data:`PARTS` (the entry points after all of them)."""
    rest = name.removeprefix(PACKAGE + ".").split(".")
    return PARTS.index(rest[0]) if rest[0] in PARTS else len(PARTS)


def test_every_import_names_a_module_that_exists() -> None:
    for name, targets in GRAPH.items():
        assert targets <= MODULES.keys(), f"{name} imports {sorted(targets - MODULES.keys())}"


def test_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = path[path.index(name):] + (name,)
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(GRAPH[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, ())


def test_each_part_imports_only_itself_and_earlier_parts() -> None:
    for name, targets in GRAPH.items():
        later = sorted(target for target in targets if _part(target) > _part(name))
        assert not later, f"{name} imports the later part(s) {later}"


@pytest.mark.parametrize("name", sorted(name for name, path in MODULES.items() if path.name == "__init__.py"))
def test_each_package_says_what_it_holds_and_imports_nothing(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    assert ast.get_docstring(tree), f"{name} has no docstring"
    assert not GRAPH[name] and not any(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body), name


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_lines_stay_where_they_were(command: str) -> None:
    entry = importlib.import_module(f"{PACKAGE}.{command}")
    real = importlib.import_module(f"{PACKAGE}.commands.{command}")
    assert entry.cli is real.cli and entry.build_parser is real.build_parser
    assert GRAPH[entry.__name__] == {real.__name__}, "an entry point only imports its command"
