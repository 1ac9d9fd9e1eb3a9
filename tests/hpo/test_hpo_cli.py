"""The command lines refuse bad options with one line and exit status 2, and work end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from applications.hpo import compare, run

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
