"""GMRES, BiCGSTAB and CG on the normal equations on explicit non-symmetric matrices, against torch.linalg.solve."""

from __future__ import annotations

import traceback

import pytest
import torch

from hypergrad import solvers
from tests.problems import rel_err


def _system(n: int = 30, skew: float = 2.0, seed: int = 0):
    """A = S + skew·K with S symmetric positive definite and K skew-symmetric: non-symmetric, non-normal
    for skew > 0, and its symmetric part S is definite, so restarted GMRES converges too."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    s = q @ torch.diag(torch.linspace(0.5, 10.0, n)) @ q.T
    k = torch.randn(n, n, generator=g)
    a = s + skew * (k - k.T) / n**0.5
    b = torch.randn(n, generator=g)
    split = n // 3

    def tree_of(x):
        return {"a": x[:split].reshape(1, split), "b": x[split:]}

    def flat(d):
        return torch.cat([d["a"].reshape(-1), d["b"]])

    return a, b, tree_of, flat


def _run(name: str, a: torch.Tensor, b: torch.Tensor, tree_of, flat, **kw):
    def matvec(v):
        return tree_of(a @ flat(v))

    def rmatvec(v):
        return tree_of(a.T @ flat(v))

    if name == "gmres":
        return solvers.gmres(matvec, tree_of(b), **kw)
    if name == "bicgstab":
        return solvers.bicgstab(matvec, tree_of(b), **kw)
    return solvers.normal_cg(matvec, rmatvec, tree_of(b), **kw)


@pytest.mark.parametrize("name", ["gmres", "bicgstab", "normal_cg"])
def test_solver_solves_a_nonsymmetric_system_and_reports_the_true_residual(name):
    a, b, tree_of, flat = _system()
    assert rel_err(a, a.T) > 0.1
    x, info = _run(name, a, b, tree_of, flat, max_iter=500, tol=1e-12)
    assert rel_err(flat(x), torch.linalg.solve(a, b)) < 1e-9
    assert info.converged, info.message
    assert len(info.residual_trace) == info.iterations + 1
    true_residual = float(torch.linalg.vector_norm(a @ flat(x) - b))
    assert info.residual_norm == pytest.approx(true_residual, rel=1e-2, abs=1e-11)


def test_full_gmres_terminates_in_at_most_n_iterations():
    a, b, tree_of, flat = _system(n=24, skew=5.0)
    x, info = _run("gmres", a, b, tree_of, flat, restart=24, max_iter=24, tol=1e-11)
    assert info.converged and info.iterations <= 24
    assert rel_err(flat(x), torch.linalg.solve(a, b)) < 1e-9


def test_restarted_gmres_reaches_the_same_solution_through_several_cycles():
    a, b, tree_of, flat = _system()
    x, info = _run("gmres", a, b, tree_of, flat, restart=5, max_iter=400, tol=1e-12)
    assert info.converged and info.extra["restarts"] >= 2
    assert rel_err(flat(x), torch.linalg.solve(a, b)) < 1e-9


@pytest.mark.parametrize("name", ["gmres", "bicgstab"])
def test_warm_start_reaches_the_solution_in_fewer_iterations(name):
    a, b, tree_of, flat = _system()
    ref = torch.linalg.solve(a, b)
    _, cold = _run(name, a, b, tree_of, flat, max_iter=500, tol=1e-10)
    x, warm = _run(name, a, b, tree_of, flat, max_iter=500, tol=1e-10, x0=tree_of(ref + 1e-7 * torch.ones_like(ref)))
    assert warm.iterations < cold.iterations and rel_err(flat(x), ref) < 1e-8


@pytest.mark.parametrize("name", ["gmres", "bicgstab", "normal_cg"])
def test_non_convergence_is_reported_in_info(name):
    a, b, tree_of, flat = _system()
    _, info = _run(name, a, b, tree_of, flat, max_iter=3, tol=1e-12)
    assert info.converged is False
    assert "stopped after" in info.message and "tolerance" in info.message


@pytest.mark.parametrize("name", ["gmres", "bicgstab"])
def test_checking_every_ten_iterations_freezes_the_converged_solution(name):
    """The device-side freeze (as on a GPU, where the host reads the residual every 10 iterations)
    gives the same answer as reading it every iteration."""
    a, b, tree_of, flat = _system()
    x1, info1 = _run(name, a, b, tree_of, flat, max_iter=500, tol=1e-10, check_every=1)
    x10, info10 = _run(name, a, b, tree_of, flat, max_iter=500, tol=1e-10, check_every=10)
    assert info10.converged and info10.iterations == info1.iterations
    assert rel_err(flat(x10), flat(x1)) < 1e-12


def test_normal_cg_converges_where_restarted_gmres_stalls():
    """A rotation-like matrix (symmetric part zero): GMRES(2) makes no progress, CG on the normal
    equations still converges."""
    n = 20
    perm = torch.roll(torch.eye(n), 1, dims=0)  # cyclic shift: orthogonal, eigenvalues on the unit circle
    b = torch.zeros(n)
    b[0] = 1.0
    tree_of, flat = (lambda x: {"x": x}), (lambda d: d["x"])
    _, stalled = _run("gmres", perm, b, tree_of, flat, restart=2, max_iter=60, tol=1e-10)
    x, info = _run("normal_cg", perm, b, tree_of, flat, max_iter=60, tol=1e-10)
    assert not stalled.converged and info.converged
    assert rel_err(flat(x), torch.linalg.solve(perm, b)) < 1e-10


@pytest.mark.parametrize("name", ["gmres", "bicgstab"])
def test_the_iterations_stay_on_the_device_of_the_system(name):
    """On the ``meta`` device (no data, every device mismatch an error) the solver runs its whole loop:
    the first failure is the host read of the finished record, not a CPU tensor mixed into the Arnoldi or
    BiCGSTAB steps (GMRES once built its unit column with a CPU index, which fails on a GPU)."""
    a = torch.empty(6, 6, device="meta")
    b = {"x": torch.empty(6, device="meta")}
    solve = getattr(solvers, name)
    with pytest.raises((RuntimeError, NotImplementedError)) as raised:
        solve(lambda v: {"x": a @ v["x"]}, b, max_iter=4, tol=1e-8, check_every=10)
    frames = [f for f in traceback.extract_tb(raised.value.__traceback__) if "/hypergrad/" in f.filename]
    assert "meta" in str(raised.value)
    assert frames[-1].filename.endswith("hypergrad/solvers/info.py"), frames[-1]
