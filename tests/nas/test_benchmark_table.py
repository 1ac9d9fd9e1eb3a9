from __future__ import annotations

from pathlib import Path

import pytest

from applications.nas.benchmark.table import DEFAULT_TABLE, BenchmarkTable, TableError, lookup_official
from applications.nas.commands.lookup import cli as lookup_cli
from applications.nas.spaces.nb201.genotype import Cell

pytestmark = [pytest.mark.float32, pytest.mark.skipif(not DEFAULT_TABLE.is_file(), reason="NAS-Bench-201 table not present")]
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def table() -> BenchmarkTable:
    return BenchmarkTable.from_csv(DEFAULT_TABLE)


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


def test_official_api_is_skipped_when_package_or_file_is_missing(tmp_path: Path) -> None:
    assert lookup_official(Cell.parse(ALL_SKIP), tmp_path / "NATS-tss-v1_0-3ffb9-simple") is None


def test_lookup_cli_prints_the_accuracies(capsys: pytest.CaptureFixture[str]) -> None:
    assert lookup_cli(["--arch", ALL_SKIP]) == 0
    out = capsys.readouterr().out
    assert "index 1835" in out and "CIFAR-10 test 54.30" in out and "ImageNet16-120 test 16.32" in out


def test_lookup_cli_reports_disconnected_cells(capsys: pytest.CaptureFixture[str]) -> None:
    arch = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert lookup_cli(["--arch", arch, "--table", str(DEFAULT_TABLE)]) == 0
    out = capsys.readouterr().out
    assert "disconnected" in out and "CIFAR-10 test 10.00" in out


def test_lookup_cli_exits_1_for_a_cell_missing_from_a_partial_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("index,arch,cifar10_valid,cifar10_test,cifar100_test,imagenet16_120_test\n"
                       f"1835,{ALL_SKIP},39.77,54.30,15.61,16.32\n")
    assert lookup_cli(["--index", "6111", "--table", str(partial)]) == 1
    assert "not in the table" in capsys.readouterr().out
