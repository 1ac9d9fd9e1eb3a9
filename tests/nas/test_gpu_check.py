"""The prepared GPU check runs through on the CPU (``--dry-run``), so it does not rot before a GPU is at hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.gpu_check import METHODS, main

pytestmark = pytest.mark.float32


def test_the_gpu_check_runs_on_the_cpu_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    methods = ["darts-1st", "idarts"]  # the first-order and a second-order path (the others differ in the estimator only)
    assert main(["--dry-run", "--methods", *methods, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["gmres"]["relative_error"] < 1e-5 and record["gmres"]["converged"]
    assert record["backend"]["tf32_cudnn"] is False and record["backend"]["device"] == "cpu"
    assert set(record["methods"]) == set(methods) and set(methods) < set(METHODS)
    for entry in record["methods"].values():
        for timing in ("autotuned", "not_autotuned"):
            seconds = entry[timing]["seconds_per_step"]
            assert seconds > 0
            assert math.isclose(entry[timing]["projected_50_epoch_hours"], seconds * 390 * 50 / 3600)
        assert entry["profile"]["steps"] == 1 and entry["profile"]["aten_ops_cpu"] > 100
        # The CPU ignores the TF32 switches: from one state the two gradients are the same, bit for bit.
        assert entry["tf32"]["alpha_grad_relative_difference"] == 0.0
        assert entry["sync_per_step"]["count"] is None  # counted on CUDA only
    assert record["reference_hours"]["issue 15's figure for the paper's search"] == 24.0
