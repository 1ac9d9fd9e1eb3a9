"""Every bad input to the NAS command lines: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from applications.nas.commands.lookup import cli as lookup_cli
from applications.nas.commands.search import cli as search_cli
from applications.nas.commands.train import cli as train_cli

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32

GOOD_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def _malformed_cifar(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    return root


SEARCH_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("unknown method", lambda d: ["--method", "darts-3rd", "--out", str(d)], "invalid choice: 'darts-3rd'"),
    ("zero epochs", lambda d: ["--epochs", "0", "--out", str(d)], "'0' is not an integer >= 1"),
    ("non-numeric epochs", lambda d: ["--epochs", "ten", "--out", str(d)], "invalid positive_int value"),
    ("negative alpha lr", lambda d: ["--alpha-lr", "-1", "--out", str(d)], "is not a finite number > 0"),
    ("nan damping", lambda d: ["--solver-damping", "nan", "--out", str(d)], "is not a finite number >= 0"),
    ("unknown space", lambda d: ["--space", "nas301", "--out", str(d)], "invalid choice: 'nas301'"),
    ("no output folder", lambda d: [], "--out DIR is required"),
    ("unknown dataset", lambda d: ["--dataset", "svhn", "--out", str(d)], "invalid choice: 'svhn'"),
    ("cifar without data dir", lambda d: ["--dataset", "cifar10", "--out", str(d)], "needs --data-dir"),
    ("missing cifar folder", lambda d: ["--dataset", "cifar10", "--data-dir", str(d), "--out", str(d / "o")],
     "cifar-10-batches-py, not found"),
    ("malformed cifar folder", lambda d: ["--dataset", "cifar10", "--data-dir", str(_malformed_cifar(d)),
                                          "--out", str(d / "o")], "expected a uint8 array of shape (N, 3072)"),
    ("subset too small", lambda d: ["--dataset", "digits", "--train-subset", "1", "--out", str(d)],
     "--train-subset 1 must lie in 2..1797"),
    ("batch larger than the data", lambda d: ["--dataset", "digits", "--train-subset", "20", "--batch-size",
                                              "64", "--out", str(d)], "batch size 64 must lie in 1..10"),
    ("image too small", lambda d: ["--image-size", "2", "--out", str(d)], "image_size = 2"),
    ("missing table", lambda d: ["--nb201-table", str(d / "absent.csv"), "--out", str(d)], "absent.csv not found"),
    ("missing nats file", lambda d: ["--nats-file", str(d / "absent.pickle"), "--out", str(d)], "not found"),
    ("nothing to resume", lambda d: ["--resume", str(d / "never")], "never not found"),
    ("resume folder without checkpoint", lambda d: ["--resume", str(d)], "checkpoint.pt not found"),
    ("damaged checkpoint", lambda d: ((d / "cp").mkdir(), (d / "cp" / "checkpoint.pt").write_bytes(b"junk"),
                                      ["--resume", str(d / "cp")])[-1], "not a torch.save archive"),
]


@pytest.mark.parametrize(("case", "argv", "message"), SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_search_rejects_bad_input_in_one_line(case: str, argv: Callable[[Path], list[str]], message: str,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(search_cli([*argv(tmp_path), "--no-progress"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m applications.nas.search: error:") and message in err


LOOKUP_CASES = [
    (["--arch", "|nor_conv_3x3~0|"], "node groups"),
    (["--arch", GOOD_ARCH.replace("avg_pool_3x3", "max_pool_3x3")], "unknown operation 'max_pool_3x3'"),
    (["--arch", GOOD_ARCH, "--table", "/nonexistent/table.csv"], "not found"),
    (["--index", "-3"], "is not an integer >= 0"),
    ([], "one of the arguments --arch --index is required"),
]


@pytest.mark.parametrize(("argv", "message"), LOOKUP_CASES)
def test_lookup_rejects_bad_input_in_one_line(argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(lookup_cli(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_lookup_rejects_a_table_with_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("index,arch\n")
    assert lookup_cli(["--arch", GOOD_ARCH, "--table", str(table)]) == 2
    assert "lacks column(s)" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--arch", "bogus"], "node groups"),
    (["--result", "/nonexistent/result.json"], "not found"),
    (["--arch", GOOD_ARCH, "--epochs", "-1"], "is not an integer >= 1"),
])
def test_train_rejects_bad_input_in_one_line(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(train_cli(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_train_rejects_a_file_that_is_not_a_search_result(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "result.json"
    bad.write_text("[1, 2]")
    assert train_cli(["--result", str(bad)]) == 2
    assert "expected the result.json a search wrote" in capsys.readouterr().err


def test_the_module_entry_point_exits_2_without_a_traceback() -> None:
    run = subprocess.run([sys.executable, "-m", "applications.nas.search", "--epochs", "0", "--out", "x"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        search_cli(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    from applications.nas.commands.search import build_parser

    for action in build_parser()._actions:
        if action.option_strings:
            assert action.help, f"{action.option_strings} has no help"
    for option in ("--method", "--resume", "--exclude-none", "--nb201-table", "--preset", "--track-bn-stats"):
        assert option in text


def test_train_retrains_a_cell_from_a_search_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    result = tmp_path / "result.json"
    result.write_text(json.dumps({"arch": GOOD_ARCH}))
    assert train_cli(["--result", str(result), "--dataset", "digits", "--channels", "4", "--cells-per-stage", "1",
                      "--epochs", "2", "--out", str(tmp_path / "retrain")]) == 0
    trained = json.loads((tmp_path / "retrain" / "train_result.json").read_text())
    assert trained["arch"] == GOOD_ARCH and trained["evaluated_on"].startswith("held-out")
    assert trained["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert f"{100 * trained['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_train_holds_out_a_validation_split_from_the_training_images(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--val-fraction takes its images from the training part only: digits' 1,797 images lose their test fifth
    (359) first, and a quarter of the remaining 1,438 (360) becomes the validation split."""
    import json

    base = ["--arch", GOOD_ARCH, "--dataset", "digits", "--channels", "4", "--cells-per-stage", "1", "--epochs", "1"]
    assert train_cli([*base, "--val-fraction", "0.25", "--out", str(tmp_path / "val")]) == 0
    trained = json.loads((tmp_path / "val" / "train_result.json").read_text())
    assert trained["val_images"] == 360 and 0.0 <= trained["val_accuracy"] <= 1.0
    assert trained["evaluated_on"].startswith("held-out") and trained["settings"]["val_fraction"] == 0.25
    assert f"validation accuracy {100 * trained['val_accuracy']:.2f}% on 360" in capsys.readouterr().out
    assert train_cli([*base, "--out", str(tmp_path / "none")]) == 0
    plain = json.loads((tmp_path / "none" / "train_result.json").read_text())
    assert plain["val_images"] == 0 and plain["val_accuracy"] is None
    # A split that leaves fewer training images than one batch is refused in one line, nothing written.
    assert train_cli([*base, "--train-subset", "20", "--val-fraction", "0.9", "--out", str(tmp_path / "tiny")]) == 2
    assert "--val-fraction 0.9 leaves" in capsys.readouterr().err and not (tmp_path / "tiny").exists()


def test_train_retrains_a_cell_with_a_node_that_feeds_only_none(tmp_path: Path) -> None:
    """Node 2 reaches the output only through `none`, so the operations into it get no gradient; they are
    trained as unused (zero gradient) instead of failing, as a search can derive such a cell."""
    import json

    dead = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    assert train_cli(["--arch", dead, "--dataset", "digits", "--channels", "4", "--cells-per-stage", "1",
                      "--epochs", "1", "--out", str(tmp_path / "dead")]) == 0
    assert 0.0 <= json.loads((tmp_path / "dead" / "train_result.json").read_text())["test_accuracy"] <= 1.0
