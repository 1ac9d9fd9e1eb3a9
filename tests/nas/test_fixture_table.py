"""The table code on a controlled table: five cells with made-up accuracies 10, 20, ..., 50 (not
NAS-Bench-201's figures), so lookups, percentiles and the lookup command have answers known here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from applications.nas.benchmark.table import BenchmarkTable
from applications.nas.commands.lookup import cli as lookup_cli
from applications.nas.spaces.nb201.genotype import Cell

FIXTURE = Path(__file__).parent / "fixtures" / "nb201_five_cells.csv"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def table() -> BenchmarkTable:
    return BenchmarkTable.from_csv(FIXTURE)


def test_the_fixture_table_is_read_row_by_row(table: BenchmarkTable) -> None:
    assert len(table) == 5
    entry = table.lookup(Cell.parse(ALL_SKIP))
    assert entry is not None and (entry.index, entry.cifar10_test, entry.cifar100_test) == (1, 20.0, 2.0)
    assert table.by_index(7).cifar10_valid == 41.0 and table.by_index(2) is None
    assert table.accuracies() == [10.0, 20.0, 30.0, 40.0, 50.0]


@pytest.mark.parametrize(("accuracy", "percentile"), [(30.0, 50.0), (5.0, 0.0), (55.0, 100.0), (25.0, 40.0), (10.0, 10.0)])
def test_percentile_is_the_mid_rank_among_the_table_cells(table: BenchmarkTable, accuracy: float, percentile: float) -> None:
    assert table.percentile(accuracy) == pytest.approx(percentile)


def test_lookup_command_reads_the_table_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert lookup_cli(["--arch", ALL_SKIP, "--table", str(FIXTURE), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["index"] == 1 and printed["cifar10_test"] == 20.0 and printed["connected"] is True
    assert lookup_cli(["--index", "4", "--table", str(FIXTURE)]) == 0
    assert "disconnected cell" in capsys.readouterr().out
    assert lookup_cli(["--index", "2", "--table", str(FIXTURE)]) == 1  # in the shipped table, not in this one
