"""Retraining derived cells: the DARTS evaluation network, cutout, checkpoints and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from applications.nas.commands import train
from applications.nas.retraining.darts import DartsEvalNetwork
from applications.nas.spaces.darts.genotype import Genotype

pytestmark = pytest.mark.float32

# DARTS (second order) as published in the DARTS repository's genotypes.py ("DARTS_V2"), 3.3M parameters.
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
TINY = ["--dataset", "digits", "--train-subset", "120", "--batch-size", "16", "--channels", "2", "--epochs", "2",
        "--no-progress"]


def test_the_darts_v2_cell_at_the_paper_setting_has_the_published_size() -> None:
    net = DartsEvalNetwork(Genotype.parse(DARTS_V2), channels=36, layers=20, in_channels=3, num_classes=10)
    assert 3.25e6 < train.parameter_count(net) < 3.35e6  # DARTS, Table 1: 3.3M


def test_cutout_zeroes_the_clipped_square_darts_zeroes() -> None:
    x = torch.ones(6, 2, 8, 8)
    got = train.cutout(x, 4, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    cy, cx = torch.randint(0, 8, (6, 1, 1, 1), generator=g), torch.randint(0, 8, (6, 1, 1, 1), generator=g)
    for i in range(6):  # DARTS's Cutout: mask[clip(y − L/2) : clip(y + L/2), same for x] = 0
        y, xx = int(cy[i]), int(cx[i])
        expected = torch.ones(2, 8, 8)
        expected[:, max(y - 2, 0):min(y + 2, 8), max(xx - 2, 0):min(xx + 2, 8)] = 0
        assert torch.equal(got[i], expected)


class _Interrupted(Exception):
    pass


def _resumed_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: list[str]) -> dict:
    assert train.cli([*first, "--out", str(tmp_path / "whole")]) == 0
    write = train.atomic_write_bytes

    def write_then_stop(path: Path, data: object) -> None:
        write(path, data)  # type: ignore[arg-type]
        raise _Interrupted  # killed right after the first epoch's checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(train, "atomic_write_bytes", write_then_stop)
        with pytest.raises(_Interrupted):
            train.cli([*first, "--out", str(tmp_path / "cut")])
    assert torch.load(tmp_path / "cut" / train.CHECKPOINT, weights_only=True)["epochs_done"] == 1
    assert train.cli(["--resume", str(tmp_path / "cut")]) == 0
    whole = json.loads((tmp_path / "whole" / train.RESULT).read_text())
    resumed = json.loads((tmp_path / "cut" / train.RESULT).read_text())
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    a = torch.load(tmp_path / "whole" / train.CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / train.CHECKPOINT, weights_only=True)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    return whole


def test_a_darts_genotype_from_a_result_json_retrains_and_resumes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"arch": DARTS_V2}))
    args = ["--result", str(result), *TINY, "--layers", "3", "--cutout", "4", "--augment"]
    whole = _resumed_equals_uninterrupted(tmp_path, monkeypatch, args)
    assert whole["kind"] == "darts" and Genotype.parse(whole["arch"]) == Genotype.parse(DARTS_V2)
    net = DartsEvalNetwork(Genotype.parse(DARTS_V2), channels=2, layers=3, in_channels=1, num_classes=10)
    assert whole["parameters"] == train.parameter_count(net)
    assert whole["settings"]["auxiliary_weight"] == 0.4 and whole["settings"]["drop_path"] == 0.2
    assert 0.0 <= whole["test_accuracy"] <= 1.0 and whole["wall_time_s"] > 0


def test_a_nas_bench_201_string_retrains_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _resumed_equals_uninterrupted(tmp_path, monkeypatch, ["--arch", NB201, *TINY, "--cells-per-stage", "1"])
    assert whole["kind"] == "nb201" and whole["arch"] == NB201


def test_options_of_the_other_kind_of_cell_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert train.cli(["--arch", NB201, "--layers", "8"]) == 2
    assert train.cli(["--genotype", DARTS_V2, "--cells-per-stage", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
