"""The search levers and baselines: weight warm-up, random search with weight sharing, the percentile of
a derived cell among all NAS-Bench-201 cells, the random-pick baseline and the collapse indicators."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest
import torch

from applications.nas.benchmark.table import expected_best_of, shipped_table
from applications.nas.commands.report import cli as report_cli
from applications.nas.commands.report import skip_share
from applications.nas.commands.search import cli as search_cli
from applications.nas.searching.config import SearchConfig, SearchConfigError
from applications.nas.spaces.nb201.genotype import OPERATIONS, Cell
from applications.nas.spaces.nb201.network import Supernet

pytestmark = pytest.mark.float32


def test_expected_best_of_n_is_the_exact_expectation_of_the_maximum() -> None:
    # Two values, two draws: the maximum is 1 only when both draws are 1 (probability 1/4).
    assert expected_best_of([2.0, 1.0], 2) == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert expected_best_of([3.0, 1.0, 2.0], 1) == pytest.approx(2.0)  # one pick: the mean
    values = [random.Random(0).gauss(0, 1) for _ in range(50)]
    rng = random.Random(1)
    sampled = statistics.mean(max(rng.choice(values) for _ in range(5)) for _ in range(40000))
    assert expected_best_of(values, 5) == pytest.approx(sampled, abs=0.02)
    with pytest.raises(ValueError):
        expected_best_of(values, 0)


def test_percentile_ranks_a_cell_among_all_cells_of_the_table() -> None:
    table = shipped_table()
    values = table.accuracies("cifar10_test")
    assert len(values) == 15625 and values == sorted(values)
    assert table.percentile(94.37) > 99.98  # the best cell
    assert table.percentile(statistics.median(values)) == pytest.approx(50.0, abs=0.01)
    assert table.percentile(10.0) < 5  # disconnected cells score 10% and rank at the bottom
    below_90 = sum(v < 90.0 for v in values) + 0.5 * sum(v == 90.0 for v in values)
    assert table.percentile(90.0) == pytest.approx(100 * below_90 / len(values))


def test_a_search_writes_and_prints_its_cells_percentile(tmp_path: Path, tiny_search: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert search_cli([*tiny_search, "--epochs", "1", "--out", str(tmp_path)]) == 0
    entry = json.loads((tmp_path / "result.json").read_text())["benchmark"]["arch"]
    table = shipped_table()
    for column in ("cifar10_test", "cifar100_test", "imagenet16_120_test"):
        assert entry["percentile"][column] == pytest.approx(table.percentile(entry[column], column))
    assert entry["cells_in_table"] == 15625
    printed = capsys.readouterr().out
    assert f"percentile among all 15,625 cells: CIFAR-10 {entry['percentile']['cifar10_test']:.1f}" in printed


def test_alpha_stays_at_its_initial_value_through_the_warm_up_epochs(tmp_path: Path, tiny_search: list[str]) -> None:
    assert search_cli([*tiny_search, "--epochs", "3", "--warmup-epochs", "2", "--out", str(tmp_path)]) == 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["arch_steps"] for r in log] == [0, 0, 3]
    assert log[0]["alpha_softmax"] == log[1]["alpha_softmax"] != log[2]["alpha_softmax"]
    with pytest.raises(SearchConfigError, match="warmup_epochs = 3"):
        SearchConfig(epochs=3, warmup_epochs=3)


def test_single_path_forward_equals_the_supernet_with_that_cell_one_hot() -> None:
    torch.manual_seed(0)
    net = Supernet(channels=3, cells_per_stage=1, in_channels=1, num_classes=4)
    cell = Cell(("nor_conv_3x3", "none", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none"))
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[torch.arange(6), [OPERATIONS.index(op) for op in cell.ops]] = 100.0  # softmax = one-hot
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(net.forward_path(x, cell), net(x), atol=1e-5)


def test_random_search_with_weight_sharing_keeps_the_best_scored_cell(tmp_path: Path, tiny_search: list[str],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = [*tiny_search, "--method", "random-ws", "--rsws-candidates", "12"]
    assert search_cli([*args, "--out", str(tmp_path / "a")]) == 0
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    chosen = result["random_ws"]
    assert result["arch"] == chosen["arch"] and result["decisive_edges"] is None
    assert 1 <= chosen["distinct_cells"] <= 12 and chosen["val_acc"] >= chosen["median_candidate_val_acc"]
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["arch_steps"] == 0 for r in log)
    assert "random search with weight sharing" in capsys.readouterr().out
    # The same seed chooses the same cell; the choice is part of the search, so a resume repeats it.
    assert search_cli(["--resume", str(tmp_path / "a"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "a" / "result.json").read_text())["arch"] == result["arch"]
    with pytest.raises(SearchConfigError, match="random-ws"):
        SearchConfig(method="random-ws", space="darts")


def test_report_adds_percentiles_the_random_baseline_and_the_collapse_plot(
        tmp_path: Path, tiny_search: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for method in ("darts-1st", "random-ws"):
        assert search_cli([*tiny_search, "--epochs", "1", "--method", method, "--rsws-candidates", "4",
                           "--out", str(tmp_path / method)]) == 0
    capsys.readouterr()
    plot = tmp_path / "collapse.png"
    assert report_cli([str(tmp_path / "darts-1st"), str(tmp_path / "random-ws"), "--random-baseline",
                       "--collapse-plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    table = shipped_table()
    mean = statistics.mean(table.accuracies("cifar10_test"))
    assert f"| mean (one pick) | {mean:.2f} |" in printed
    assert f"| expected best of 10 | {expected_best_of(table.accuracies('cifar10_test'), 10):.2f} |" in printed
    first = json.loads((tmp_path / "darts-1st" / "result.json").read_text())
    assert f"| {first['benchmark']['arch']['percentile']['cifar10_test']:.1f} |" in printed
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert report_cli([str(tmp_path / "darts-1st"), "--collapse-plot", str(tmp_path / "absent" / "c.png")]) == 2


def test_skip_share_counts_skip_connections_of_the_cell() -> None:
    all_skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert skip_share(all_skip) == 1.0
    assert skip_share(all_skip.replace("skip_connect~2", "none~2")) == pytest.approx(5 / 6)


def test_the_cifar_cpu_preset_searches_an_official_cifar10_folder(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tests.nas.test_data import _write_cifar

    _write_cifar(tmp_path / "data", "cifar10", per_file=24)  # 120 training images in the official layout
    out = tmp_path / "search"
    assert search_cli(["--preset", "cifar-cpu", "--data-dir", str(tmp_path / "data"), "--train-subset", "64",
                       "--batch-size", "16", "--epochs", "1", "--no-progress", "--no-table", "--out", str(out)]) == 0
    config = json.loads((out / "result.json").read_text())["config"]
    # The preset's own choices, with the three the command line changed.
    assert (config["dataset"], config["image_size"], config["channels"], config["cells_per_stage"]) == ("cifar10", 16, 8, 1)
    assert (config["method"], config["alpha_lr"], config["train_subset"], config["epochs"]) == ("darts-1st", 0.1, 64, 1)
    assert config["alpha_weight_decay"] == 0.0  # the paper's 1e-3 kept alpha from becoming decisive (docs/nas.md)
    assert (config["beta_decay"], config["selection"], config["pt_val_images"], config["pt_ties"]) == (50.0, "pt", None,
                                                                                             "parametric")
    result = json.loads((out / "result.json").read_text())
    assert result["arch"] == result["arch_pt"] and "arch_argmax" in result
    err = capsys.readouterr().err
    assert "cifar-cpu preset" in err and "Changed on the command line from the preset: epochs=1, train_subset=64" in err
    assert search_cli(["--preset", "cifar-cpu", "--out", str(tmp_path / "no-data")]) == 2
    assert "dataset cifar10 needs --data-dir" in capsys.readouterr().err


def test_report_groups_an_ablation_by_the_settings_it_varies(tmp_path: Path, tiny_search: list[str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for lr in ("0.05", "0.2"):
        assert search_cli([*tiny_search, "--epochs", "1", "--alpha-lr", lr, "--no-table", "--out", str(tmp_path / lr)]) == 0
    capsys.readouterr()
    assert report_cli([str(tmp_path / "0.05"), str(tmp_path / "0.2"), "--group-by", "alpha_lr,epochs"]) == 0
    summary = capsys.readouterr().out.split("\n\n")[1].splitlines()[2:]
    assert [row.split(" | ")[0] for row in summary] == ["| idarts (alpha_lr=0.05, epochs=1)", "| idarts (alpha_lr=0.2, epochs=1)"]
    assert report_cli([str(tmp_path / "0.05"), "--group-by", "alpha_rate"]) == 2
    assert "--group-by alpha_rate: not a setting" in capsys.readouterr().err


def test_a_cosine_alpha_schedule_lowers_alpha_lr_each_epoch_towards_zero(tmp_path: Path, tiny_search: list[str]) -> None:
    args = [*tiny_search, "--epochs", "3", "--alpha-lr", "0.2", "--no-table"]
    assert search_cli([*args, "--alpha-lr-schedule", "cosine", "--out", str(tmp_path / "cos")]) == 0
    log = [json.loads(line) for line in (tmp_path / "cos" / "log.jsonl").read_text().splitlines()]
    assert [r["alpha_lr"] for r in log] == pytest.approx([0.2, 0.15, 0.05])  # 0.1 (1 + cos(pi e / 3))
    adam = torch.load(tmp_path / "cos" / "checkpoint.pt", weights_only=True)["a_opt"]
    assert adam["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert search_cli([*args, "--out", str(tmp_path / "constant")]) == 0
    log = [json.loads(line) for line in (tmp_path / "constant" / "log.jsonl").read_text().splitlines()]
    assert [r["alpha_lr"] for r in log] == [0.2, 0.2, 0.2]
