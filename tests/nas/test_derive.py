from __future__ import annotations

import pytest
import torch

from applications.nas.spaces.nb201.derive import derive_cell, edge_probabilities, format_alpha_table
from applications.nas.spaces.nb201.genotype import OPERATIONS

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32


def _alpha(winners: list[str], runner_up: str | None = None) -> torch.Tensor:
    alpha = torch.zeros(6, 5)
    for edge, op in enumerate(winners):
        alpha[edge, OPERATIONS.index(op)] = 2.0
        if runner_up is not None:
            alpha[edge, OPERATIONS.index(runner_up)] = 1.0
    return alpha


def test_derivation_keeps_the_largest_alpha_of_each_edge() -> None:
    winners = ["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none", "nor_conv_1x1", "nor_conv_3x3"]
    cell = derive_cell(_alpha(winners))
    assert list(cell.ops) == winners
    assert str(cell) == ("|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|"
                         "+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")


def test_excluding_none_takes_the_best_other_operation() -> None:
    alpha = _alpha(["none"] * 6, runner_up="skip_connect")
    assert derive_cell(alpha).ops == ("none",) * 6
    assert not derive_cell(alpha).is_connected()
    assert derive_cell(alpha, exclude_none=True).ops == ("skip_connect",) * 6


def test_derivation_is_invariant_to_a_per_edge_shift_of_alpha() -> None:
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    shifted = alpha + torch.arange(6.0).view(6, 1) * 10
    assert derive_cell(alpha) == derive_cell(shifted)
    assert torch.allclose(edge_probabilities(alpha), edge_probabilities(shifted), atol=1e-6)


def test_alpha_of_the_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
        derive_cell(torch.zeros(5, 5))


def test_alpha_table_shows_softmax_rows_and_marks_the_winner() -> None:
    alpha = _alpha(["avg_pool_3x3"] * 6)
    lines = format_alpha_table(alpha).splitlines()
    assert len(lines) == 7
    expected = torch.softmax(alpha[0], 0)[4].item()
    assert lines[1].startswith("0 -> 1")
    assert f"{expected:.3f}*" in lines[1]
    assert lines[1].count("*") == 1
