from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import hypergrad as hg
from applications.nas.commands.search import cli as search_cli
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig
from applications.nas.searching.loop import CHECKPOINT, SearchState, run_search
from applications.nas.spaces.nb201.genotype import Cell

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32

TIMING_KEYS = {"wall_time_s", "seconds_per_epoch", "seconds_per_step", "seconds"}


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_a_tiny_search_of_each_method_writes_a_valid_result(
        method: str, tmp_path: Path, tiny_search: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / method
    assert search_cli([*tiny_search, "--method", method, "--seed", "3", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == method and result["seed"] == 3 and result["epochs"] == 2
    cell = Cell.parse(result["arch"])
    assert result["connected"] == cell.is_connected()
    alpha = torch.tensor(result["alpha"])
    assert alpha.shape == (6, 5) and torch.isfinite(alpha).all()
    assert alpha.abs().max() > 1e-2  # moved away from its 1e-3 initialisation
    assert torch.allclose(torch.tensor(result["alpha_softmax"]).sum(1), torch.ones(6))
    assert result["wall_time_s"] > 0 and result["nonfinite_steps"] == []
    entry = result["benchmark"]["arch"]
    assert entry["arch"] == result["arch"] and 0 <= entry["cifar10_test"] <= 100
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[-1]["arch_steps"] == 3
    for name in ("alpha.png", "cell.png", CHECKPOINT):
        assert (out / name).stat().st_size > 1000
    assert (out / "alpha.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert result["arch"] in printed and "softmax(alpha) per edge" in printed and "alpha.png" in printed


def test_resumed_search_ends_with_the_result_of_an_uninterrupted_one(
        tmp_path: Path, tiny_search: list[str]) -> None:
    args = [*tiny_search, "--method", "idarts", "--epochs", "3", "--track-bn-stats"]
    assert search_cli([*args, "--out", str(tmp_path / "whole")]) == 0

    class Interrupted(Exception):
        pass

    def stop_after_second_epoch(epoch: int, state: SearchState) -> None:
        if epoch == 2:
            raise Interrupted

    from applications.nas.commands.search import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args([*args, "--out", str(tmp_path / "cut")]))
    with pytest.raises(Interrupted):
        run_search(config, tmp_path / "cut", progress=False, on_epoch_end=stop_after_second_epoch)
    assert len((tmp_path / "cut" / "log.jsonl").read_text().splitlines()) == 2
    torch.manual_seed(12345)  # a resume must not depend on the global RNG state it finds
    assert search_cli(["--resume", str(tmp_path / "cut"), "--no-progress"]) == 0

    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert whole["alpha"] == resumed["alpha"]  # bit-for-bit
    assert _without_timing(whole) | {"files": None} == _without_timing(resumed) | {"files": None}
    whole_log = [_without_timing(json.loads(x)) for x in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    cut_log = [_without_timing(json.loads(x)) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert whole_log == cut_log
    whole_state = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    cut_state = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(whole_state[k], cut_state[k]) for k in whole_state)


def test_a_non_finite_hypergradient_is_reported_with_its_step_and_never_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = hg.hypergradient
    calls: list[torch.Tensor] = []

    def poison_second_call(outer_loss, inner_loss, params, hparams, *, outer_batch, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(hparams["alpha"].detach().clone())
        if len(calls) == 2:
            x, y = outer_batch
            outer_batch = (x * float("nan"), y)
        return real(outer_loss, inner_loss, params, hparams, outer_batch=outer_batch, **kwargs)

    monkeypatch.setattr(hg, "hypergradient", poison_second_call)
    config = SearchConfig(method="idarts", dataset="digits", train_subset=96, batch_size=16, channels=2,
                          cells_per_stage=1, epochs=2, alpha_lr=0.05)
    state = run_search(config, tmp_path, progress=False)
    assert state.nonfinite_steps[0]["epoch"] == 1 and state.nonfinite_steps[0]["step"] == 2
    assert len(state.nonfinite_steps) == 1
    assert torch.equal(calls[2], calls[1])  # α unchanged across the skipped step
    assert not torch.equal(calls[1], calls[0])  # while the steps around it did move α
    assert all(torch.isfinite(alpha).all() for alpha in state.alphas.values())
    assert state.history[0]["skipped_arch_steps"] == 1 and state.history[0]["arch_steps"] == 2


def test_report_tabulates_searches_and_averages_each_method(tmp_path: Path, tiny_search: list[str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from applications.nas.commands.report import cli as report_cli

    for seed in (0, 1):
        assert search_cli([*tiny_search, "--epochs", "1", "--seed", str(seed), "--out", str(tmp_path / str(seed))]) == 0
    capsys.readouterr()
    assert report_cli([str(tmp_path / "0"), str(tmp_path / "1" / "result.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads((tmp_path / s / "result.json").read_text()) for s in ("0", "1")]
    c10 = [r["benchmark"]["arch"]["cifar10_test"] for r in rows]
    assert lines[2].startswith("| idarts | 0 |") and lines[3].startswith("| idarts | 1 |")
    assert f"| idarts | 2 | {sum(c10) / 2:.2f} ± " in lines[-1]
    with pytest.raises(SystemExit) as stop:  # a missing file is refused while the command line is parsed
        report_cli([str(tmp_path / "absent")])
    assert stop.value.code == 2
