from __future__ import annotations

import pytest

from applications.nas.benchmark.table import shipped_table
from applications.nas.spaces.nb201.genotype import EDGES, OPERATIONS, ArchStringError, Cell

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_the_search_space_has_five_operations_on_six_edges() -> None:
    assert OPERATIONS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_parse_reads_edges_in_official_order_and_prints_back_the_same_string() -> None:
    cell = Cell.parse(BEST)
    assert cell.op(1, 0) == "nor_conv_3x3"
    assert cell.op(3, 0) == "skip_connect"
    assert cell.op(3, 2) == "nor_conv_1x1"
    assert str(cell) == BEST


def test_every_architecture_of_the_benchmark_round_trips(shipped_rows: list[dict[str, str]]) -> None:
    archs = [row["arch"] for row in shipped_rows]
    assert len(set(archs)) == 15625
    assert all(str(Cell.parse(a)) == a for a in archs)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "node groups"),
        ("|conv~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|", "unknown operation"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end"),
        ("", "node groups"),
    ],
)
def test_malformed_strings_are_rejected_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(ArchStringError, match=complaint):
        Cell.parse(text)


@pytest.mark.parametrize(
    ("ops", "connected"),
    [
        (("none",) * 6, False),
        (("skip_connect", "none", "none", "none", "none", "none"), False),  # reaches node 1 only
        (("none", "none", "none", "avg_pool_3x3", "none", "none"), True),  # direct input -> output
        (("nor_conv_1x1", "none", "skip_connect", "none", "none", "nor_conv_3x3"), True),  # 0->1->2->3
        (("none", "none", "skip_connect", "none", "nor_conv_3x3", "nor_conv_3x3"), False),  # nodes 1, 2 unfed
    ],
)
def test_connectivity_follows_non_none_paths_from_input_to_output(ops: tuple[str, ...], connected: bool) -> None:
    assert Cell(ops).is_connected() is connected


def test_disconnected_cells_are_exactly_those_the_benchmark_scores_at_chance() -> None:
    table = shipped_table()
    index = 0
    mismatches = []
    while (entry := table.by_index(index)) is not None:
        if Cell.parse(entry.arch).is_connected() != (entry.cifar10_test > 10.0):
            mismatches.append(entry.index)
        index += 1
    assert index == 15625
    assert mismatches == []
