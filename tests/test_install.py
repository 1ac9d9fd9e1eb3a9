"""A non-editable install works outside the checkout: the wheel holds every file the package reads.

The wheel is built from a copy of the package sources (no network: ``--no-build-isolation``), installed
with ``pip install --no-deps --target`` into a temporary folder, and used from another temporary
folder with only that folder on ``PYTHONPATH`` (the dependencies come from the test environment):
the import must resolve there, the console scripts must run, the shipped NAS-Bench-201 table must
answer a lookup, and an example must run on the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.float32

ROOT = Path(__file__).resolve().parents[1]
BEST_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("install")
    src = work / "src"
    src.mkdir()
    for name in ("hypergrad", "applications"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("torch_hypergrad-*.whl")
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "target": target, "cwd": elsewhere}


def run(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed["target"]), "MPLBACKEND": "Agg"}
    return subprocess.run(list(args), cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=600)


def test_wheel_holds_the_package_data(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "hypergrad/py.typed" in names
    assert "applications/nas/benchmark/data/nb201_accuracy.csv.gz" in names
    assert "applications/nas/common/bundled/cifar10_train_10k_16px.npz" in names
    assert not any(n.startswith(("tests/", "examples/", "docs/")) for n in names)
    entry_points = zipfile.ZipFile(installed["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "hypergrad-nas = applications.entry_points:nas" in entry_points
    assert "hypergrad-hpo = applications.entry_points:hpo" in entry_points


def test_import_resolves_to_the_install_not_the_checkout(installed):
    out = run(installed, sys.executable, "-c",
              "import hypergrad, applications.nas.benchmark.table as t; print(hypergrad.__file__); print(t.__file__); "
              "print(hypergrad.__version__)")
    assert out.returncode == 0, out.stderr
    files = out.stdout.splitlines()[:2]
    assert all(Path(f).is_relative_to(installed["target"]) for f in files), files
    assert out.stdout.splitlines()[2] == __import__("hypergrad").__version__


def test_console_lookup_reads_the_shipped_table(installed):
    out = run(installed, str(installed["target"] / "bin" / "hypergrad-nas"), "lookup", "--arch", BEST_CELL)
    assert out.returncode == 0, out.stderr
    # The published NAS-Bench-201 accuracies of this cell (index 6111, the best on CIFAR-10 test).
    assert "index 6111" in out.stdout
    assert "CIFAR-10 valid 91.61  CIFAR-10 test 94.37  CIFAR-100 test 73.22  ImageNet16-120 test 46.71" in out.stdout


@pytest.mark.parametrize("command", [("hypergrad-nas", c) for c in ("search", "lookup", "train", "report")]
                         + [("hypergrad-hpo", c) for c in ("run", "compare", "ijcnn1")])
def test_every_console_command_has_help(installed, command):
    script, name = command
    out = run(installed, str(installed["target"] / "bin" / script), name, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--" in out.stdout


@pytest.mark.parametrize("script", ["hypergrad-nas", "hypergrad-hpo"])
def test_console_errors_are_one_line(installed, script):
    exe = str(installed["target"] / "bin" / script)
    top = run(installed, exe, "--help")
    assert top.returncode == 0 and "commands:" in top.stdout
    for args in ((), ("frobnicate",)):
        out = run(installed, exe, *args)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith(f"{script}: error:")
    sub = "lookup" if script == "hypergrad-nas" else "run"
    out = run(installed, exe, sub, "--no-such-option")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_an_example_runs_on_the_installed_package(installed):
    out = run(installed, sys.executable, str(ROOT / "examples" / "game_equilibrium.py"), "--smoke", "--png", "game.png")
    assert out.returncode == 0, out.stderr
    assert "check: GMRES hypergradient vs finite differences" in out.stdout
    assert (installed["cwd"] / "game.png").stat().st_size > 10_000
