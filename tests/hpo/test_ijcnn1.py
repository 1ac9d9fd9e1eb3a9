"""The ijcnn1 task on a small synthetic problem of the same form: the inner solver, the hypergradient
behind every lever against finite differences of the exact evaluator, the peers' hypergradients, and
the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from applications.hpo.ijcnn1 import outer, peers
from applications.hpo.ijcnn1.problem import hessian_diagonal, inner_loss, newton, start, synthetic, value

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = synthetic()


def test_newton_reaches_the_evaluators_tolerance_from_zero_and_from_a_warm_start():
    x0, _ = start()
    z, info = newton(PROBLEM.train, torch.from_numpy(x0), torch.zeros(22), tol=1e-12)
    assert info.grad_norm <= 1e-12
    grad = torch.func.grad(lambda z_: inner_loss({"z": z_}, {"x": torch.from_numpy(x0)}, PROBLEM.train))(z)
    assert float(grad.norm()) <= 1e-12
    _, warm = newton(PROBLEM.train, torch.from_numpy(x0 + 0.01), z, tol=1e-12)
    assert warm.iterations < info.iterations


def test_the_jacobi_diagonal_is_the_hessians():
    x = torch.linspace(-3, 3, 22)
    z = torch.randn(22)
    hess = torch.func.hessian(lambda z_: inner_loss({"z": z_}, {"x": x}, PROBLEM.train))(z)
    assert torch.allclose(hessian_diagonal({"z": z}, {"x": x}, PROBLEM.train)["z"], hess.diagonal(), rtol=1e-12)


def _finite_difference(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    out = np.empty_like(x)
    for j in range(len(x)):
        e = np.zeros_like(x)
        e[j] = eps
        out[j] = (value(PROBLEM, x + e) - value(PROBLEM, x - e)) / (2 * eps)
    return out


LEVERS = [outer.Levers(), outer.Levers(warm_adjoint=False), outer.Levers(warm_inner=False), outer.Levers(solve="newton"),
          outer.Levers(solve="cg"), outer.Levers(solve="dense")]


@pytest.mark.parametrize("levers", LEVERS, ids=lambda lv: lv.label)
def test_every_lever_gives_the_finite_difference_gradient_along_a_path(levers):
    """Three outer points in a row, so the warm starts are used; ∇h against central differences of h."""
    x0, _ = start()
    oracle = outer.Oracle(PROBLEM, levers)
    for t in range(3):
        x = x0 + 0.3 * t
        h, g = oracle(x)
        assert h == pytest.approx(value(PROBLEM, x), abs=1e-12)
    fd = _finite_difference(x)
    assert np.allclose(g, fd, rtol=0, atol=1e-7 * np.abs(fd).max() + 1e-10)


def test_the_peers_agree_with_ours_at_the_start():
    x0, _ = start()
    _, ours = outer.Oracle(PROBLEM)(x0)
    with warnings.catch_warnings():  # torchopt 0.7 calls the deprecated functorch.vjp
        warnings.simplefilter("ignore", FutureWarning)
        _, torchopt_grad = peers.TorchoptOracle(PROBLEM)(x0)
    assert np.allclose(torchopt_grad, ours, rtol=0, atol=1e-5 * np.abs(ours).max())
    _, jaxopt_grad = peers.JaxoptOracle(PROBLEM, maxiter=500)(x0)
    # jaxopt's LBFGS stops at its default tolerance (1e-3 on the gradient norm): agreement to that order.
    assert np.allclose(jaxopt_grad, ours, rtol=0, atol=1e-2 * np.abs(ours).max())


def test_lbfgsb_stays_in_the_box_and_lowers_h():
    x0, _ = start()
    trace = outer.run(outer.Oracle(PROBLEM), x0, "lbfgsb", budget=1e9, label="ours", max_iter=15)
    assert all((x >= -12).all() and (x <= 12).all() for x in trace.xs)
    assert value(PROBLEM, trace.xs[-1]) < value(PROBLEM, x0) - 1e-3
    assert trace.seconds == sorted(trace.seconds) and len(trace.cpu_seconds) == len(trace.xs)


def test_the_command_writes_the_curve_and_the_result(tmp_path: Path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "applications.hpo.ijcnn1", "--synthetic", "--out", str(out),
                           "--runs", "ours,ours-sgd", "--budget", "2", "--clock", "cpu", "--points", "10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["ours", "ours-sgd"]
    ours = result["runs"][0]
    assert ours["suboptimality"][-1] < ours["suboptimality"][0] and min(ours["suboptimality"]) >= 0
    assert (out / "curve.png").stat().st_size > 0 and (out / "curve_cpu.png").stat().st_size > 0


def test_a_data_folder_without_ijcnn1_is_one_line(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "applications.hpo.ijcnn1", "--data", str(tmp_path), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "neither ijcnn1.trn nor ijcnn1.trn.bz2" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
