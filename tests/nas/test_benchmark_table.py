"""The NAS-Bench-201 table shipped inside the package: its content, the reader (plain and gzipped CSV, one-line
errors), and the commands that use it by default, run from a folder with nothing beside it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from applications.nas.benchmark.table import (
    ACCURACY_COLUMNS,
    TEST_COLUMNS,
    BenchmarkTable,
    TableError,
    lookup_official,
    shipped_table,
)
from applications.nas.commands.lookup import cli as lookup_cli
from applications.nas.commands.train import cli as train_cli
from applications.nas.spaces.nb201.genotype import Cell

pytestmark = pytest.mark.float32
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
HEADER = "index,arch," + ",".join(ACCURACY_COLUMNS) + "\n"
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table() -> BenchmarkTable:
    return shipped_table()


def _row(rows: list[dict[str, str]], arch: str) -> dict[str, str]:
    (row,) = [r for r in rows if r["arch"] == arch]
    return row


def _percentile(rows: list[dict[str, str]], accuracy: float, column: str) -> float:
    """Mid-rank percentile counted directly over the rows (the definition in BenchmarkTable.percentile)."""
    values = [float(r[column]) for r in rows]
    return 100 * (sum(v < accuracy for v in values) + 0.5 * sum(v == accuracy for v in values)) / len(values)


def test_the_shipped_table_holds_every_cell_once_with_valid_accuracies(
        table: BenchmarkTable, shipped_rows: list[dict[str, str]]) -> None:
    assert len(shipped_rows) == 15625 and len(table) == 15625
    assert sorted(int(r["index"]) for r in shipped_rows) == list(range(15625))
    assert len({r["arch"] for r in shipped_rows}) == 15625
    for row in shipped_rows:
        entry = table.by_index(int(row["index"]))
        assert entry is not None and entry.arch == row["arch"]
        accuracies = [float(row[c]) for c in ACCURACY_COLUMNS]
        assert [getattr(entry, c) for c in ACCURACY_COLUMNS] == accuracies
        assert all(0.0 < a <= 100.0 for a in accuracies)
        # A trained cell beats chance on each dataset unless its input never reaches its output.
        assert float(row["cifar10_test"]) >= 10.0 and float(row["cifar100_test"]) >= 1.0


def test_best_cifar10_cell_has_the_published_accuracy(table: BenchmarkTable) -> None:
    entry = table.by_index(6111)
    assert entry is not None
    assert round(entry.cifar10_test, 2) == 94.37
    assert table.lookup(Cell.parse(entry.arch)) == entry


def test_all_skip_cell_has_the_published_darts_collapse_figures(table: BenchmarkTable) -> None:
    entry = table.lookup(Cell.parse(ALL_SKIP))
    assert entry is not None and entry.index == 1835
    assert (round(entry.cifar10_test, 2), round(entry.cifar100_test, 2), round(entry.imagenet16_120_test, 2)) == (
        54.30, 15.61, 16.32)
    assert round(entry.cifar10_valid, 2) == 39.77


def test_published_best_cells_of_the_other_datasets(table: BenchmarkTable) -> None:
    assert round(table.by_index(9930).cifar100_test, 2) == 73.51  # type: ignore[union-attr]
    assert round(table.by_index(857).imagenet16_120_test, 2) == 47.31  # type: ignore[union-attr]


def test_plain_and_gzipped_tables_read_alike_whatever_their_names(tmp_path: Path,
                                                                   shipped_rows: list[dict[str, str]]) -> None:
    text = HEADER + "".join(",".join(r[c] for c in ("index", "arch", *ACCURACY_COLUMNS)) + "\n" for r in shipped_rows[:40])
    plain = tmp_path / "plain.csv"
    plain.write_text(text)
    packed = tmp_path / "packed.csv"  # gzipped under a plain name: the content decides, not the suffix
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = BenchmarkTable.from_csv(plain), BenchmarkTable.from_csv(str(packed))
    assert len(a) == len(b) == 40
    for row in shipped_rows[:40]:
        assert a.by_index(int(row["index"])) == b.by_index(int(row["index"])) is not None
        assert a.by_index(int(row["index"])).cifar10_test == float(row["cifar10_test"])  # type: ignore[union-attr]


def test_missing_or_malformed_tables_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="not found"):
        BenchmarkTable.from_csv(tmp_path / "absent.csv")
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("index,arch\n0,x\n")
    with pytest.raises(TableError, match="lacks column"):
        BenchmarkTable.from_csv(no_column)
    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text("index,arch,cifar10_valid,cifar10_test,cifar100_test,imagenet16_120_test\n"
                       f"0,{ALL_SKIP},1,2,three,4\n")
    with pytest.raises(TableError, match="line 2"):
        BenchmarkTable.from_csv(bad_row)
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(gzip.compress((HEADER + f"1835,{ALL_SKIP},39.77,54.30,15.61,16.32\n").encode())[:-12])
    with pytest.raises(TableError, match="truncated or corrupt gzip"):
        BenchmarkTable.from_csv(truncated)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00index")
    with pytest.raises(TableError, match="not UTF-8"):
        BenchmarkTable.from_csv(binary)
    with pytest.raises(TableError, match="is not a file"):
        BenchmarkTable.from_csv(tmp_path)  # a folder is not a table


def test_lookup_cli_refuses_a_bad_table_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    assert lookup_cli(["--arch", ALL_SKIP, "--table", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "gzip" in err


def test_official_api_is_skipped_when_package_or_file_is_missing(tmp_path: Path) -> None:
    assert lookup_official(Cell.parse(ALL_SKIP), tmp_path / "NATS-tss-v1_0-3ffb9-simple") is None


def test_lookup_cli_prints_the_accuracies(capsys: pytest.CaptureFixture[str]) -> None:
    assert lookup_cli(["--arch", ALL_SKIP]) == 0
    out = capsys.readouterr().out
    assert "index 1835" in out and "CIFAR-10 test 54.30" in out and "ImageNet16-120 test 16.32" in out


def test_lookup_cli_reports_disconnected_cells(capsys: pytest.CaptureFixture[str]) -> None:
    arch = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert lookup_cli(["--arch", arch]) == 0
    out = capsys.readouterr().out
    assert "disconnected" in out and "CIFAR-10 test 10.00" in out


def test_lookup_cli_exits_1_for_a_cell_missing_from_a_partial_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("index,arch,cifar10_valid,cifar10_test,cifar100_test,imagenet16_120_test\n"
                       f"1835,{ALL_SKIP},39.77,54.30,15.61,16.32\n")
    assert lookup_cli(["--index", "6111", "--table", str(partial)]) == 1
    assert "not in the table" in capsys.readouterr().out


def test_train_reports_the_published_accuracies_of_a_nas_bench_201_cell(
        tmp_path: Path, shipped_rows: list[dict[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli(["--arch", BEST, "--dataset", "digits", "--train-subset", "200", "--channels", "2",
                      "--cells-per-stage", "1", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    entry = json.loads((tmp_path / "train_result.json").read_text())["benchmark"]
    row = _row(shipped_rows, BEST)
    assert entry["index"] == int(row["index"]) == 6111
    assert entry["cifar10_test"] == float(row["cifar10_test"])
    assert entry["percentile"]["cifar10_test"] == pytest.approx(_percentile(shipped_rows, entry["cifar10_test"], "cifar10_test"))
    printed = capsys.readouterr().out
    assert f"on CIFAR-10): test accuracy {float(row['cifar10_test']):.2f}%, percentile" in printed


@pytest.fixture(scope="module")
def packages_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's two packages in one zip file: importable with nothing else of the checkout around them, and
    what proves that the table is read as a package resource, not from a path in the file system."""
    archive = tmp_path_factory.mktemp("packaged") / "hypergrad_packages.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for package in ("hypergrad", "applications"):
            for file in sorted((CHECKOUT / package).rglob("*")):
                if file.is_file() and "__pycache__" not in file.parts:
                    zipped.write(file, file.relative_to(CHECKOUT).as_posix())
    return archive


def _run(module: str, args: list[str], cwd: Path, packages: Path) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in ``cwd``, with the project importable only from ``packages``."""
    env = {**os.environ, "PYTHONPATH": str(packages)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_commands_use_the_shipped_table_from_a_zip_with_nothing_beside_it(
        tmp_path: Path, packages_zip: Path, tiny_search: list[str], shipped_rows: list[dict[str, str]]) -> None:
    """A new user's situation: no ../shared, no table option. lookup, search and report still print the
    benchmark's accuracies and percentiles, each checked against the shipped file's own row."""
    assert not (tmp_path / ".." / "shared").exists() and not (tmp_path / "applications").exists()
    run = _run("applications.nas.lookup", ["--arch", BEST], tmp_path, packages_zip)
    assert run.returncode == 0, run.stderr
    row = _row(shipped_rows, BEST)
    assert f"index {row['index']}: {BEST}" in run.stdout
    assert (f"CIFAR-10 valid {float(row['cifar10_valid']):.2f}  CIFAR-10 test {float(row['cifar10_test']):.2f}  "
            f"CIFAR-100 test {float(row['cifar100_test']):.2f}  ImageNet16-120 test "
            f"{float(row['imagenet16_120_test']):.2f}") in run.stdout

    run = _run("applications.nas.search", [*tiny_search, "--epochs", "1", "--out", "found"], tmp_path, packages_zip)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "found" / "result.json").read_text())
    entry, row = result["benchmark"]["arch"], _row(shipped_rows, result["arch"])
    assert entry["index"] == int(row["index"]) and entry["cells_in_table"] == 15625
    for column in TEST_COLUMNS:
        assert entry[column] == float(row[column])
        assert entry["percentile"][column] == pytest.approx(_percentile(shipped_rows, float(row[column]), column))
    assert f"test accuracy CIFAR-10 {float(row['cifar10_test']):.2f}" in run.stdout
    assert f"percentile among all 15,625 cells: CIFAR-10 {entry['percentile']['cifar10_test']:.1f}" in run.stdout

    run = _run("applications.nas.report", ["found", "--random-baseline"], tmp_path, packages_zip)
    assert run.returncode == 0, run.stderr
    mean = sum(float(r["cifar10_test"]) for r in shipped_rows) / len(shipped_rows)
    assert f"| mean (one pick) | {mean:.2f} |" in run.stdout
    assert f"| {entry['percentile']['cifar10_test']:.1f} |" in run.stdout
