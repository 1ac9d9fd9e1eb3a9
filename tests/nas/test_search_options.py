"""The effect, not only the parsing, of search options that change what a search computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from applications.nas.commands.search import cli as search_cli
from applications.nas.spaces.nb201.genotype import Cell

pytestmark = pytest.mark.float32


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_inner_steps_takes_one_alpha_step_per_that_many_weight_steps(tmp_path: Path, tiny_search: list[str]) -> None:
    # 96 images in batches of 16: 3 training steps per epoch; with --inner-steps 2 only the second is followed
    # by an α step ((step + 1) % 2 == 0), and the first epoch's third step is not.
    args = [*tiny_search, "--method", "darts-1st", "--epochs", "1"]
    assert search_cli([*args, "--out", str(tmp_path / "one")]) == 0
    assert search_cli([*args, "--inner-steps", "2", "--out", str(tmp_path / "two")]) == 0
    assert _log(tmp_path / "one")[-1]["arch_steps"] == 3
    assert _log(tmp_path / "two")[-1]["arch_steps"] == 1


def test_exclude_none_derives_a_cell_without_none(tmp_path: Path, tiny_search: list[str]) -> None:
    args = [*tiny_search, "--method", "darts-1st", "--epochs", "1", "--seed", "1"]
    cells = {}
    for name, extra in (("plain", []), ("excluded", ["--exclude-none"])):
        assert search_cli([*args, *extra, "--out", str(tmp_path / name)]) == 0
        cells[name] = Cell.parse(json.loads((tmp_path / name / "result.json").read_text())["arch"]).ops
    assert "none" in cells["plain"]  # this seed's α picks none somewhere, so the option has something to change
    assert "none" not in cells["excluded"]
    # Edges whose strongest operation is not none keep it.
    assert all(e == p for p, e in zip(cells["plain"], cells["excluded"]) if p != "none")
