"""The Jacobi preconditioner and the size-based choice of the dense solve, against closed forms."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from hypergrad.solvers.diagonal import hutchinson_diagonal
from tests.problems import Ridge

D = 60


def _badly_scaled() -> Ridge:
    """Per-feature ridge with features scaled over three decades and penalties over six: the Hessian's
    diagonal spans about six decades, and plain CG needs ~8 iterations per unknown."""
    problem = Ridge(n=120, d=D, seed=4)
    problem.X = problem.X * torch.logspace(-1.5, 1.5, D)
    problem.train = (problem.X, problem.y)
    problem.lam = torch.logspace(-3, 3, D)
    return problem


def _ridge_diagonal(p, h, batch):
    X, _ = batch
    return {"w": h["lam"] + (X ** 2).sum(0)}


def _solve(problem: Ridge, method: object) -> hg.Hypergradient:
    return hg.hypergradient(Ridge.outer, Ridge.inner, {"w": problem.solution()}, {"lam": problem.lam},
                            outer_batch=problem.val, inner_batch=problem.train, method=method)


def _close(res: hg.Hypergradient, problem: Ridge) -> bool:
    exact = problem.hypergradient()
    return torch.allclose(res.grads["lam"], exact, rtol=0, atol=1e-9 * float(exact.abs().max()))


def test_jacobi_with_the_exact_diagonal_reaches_the_closed_form_in_fewer_iterations():
    problem = _badly_scaled()
    plain = _solve(problem, hg.CG(max_iter=1000, tol=1e-12))
    jacobi = _solve(problem, hg.CG(max_iter=1000, tol=1e-12, preconditioner=hg.Jacobi(diagonal=_ridge_diagonal)))
    assert plain.info.converged and jacobi.info.converged
    assert _close(plain, problem) and _close(jacobi, problem)
    assert jacobi.info.iterations < plain.info.iterations / 4, (jacobi.info.iterations, plain.info.iterations)


def test_jacobi_with_an_estimated_diagonal_converges_to_the_closed_form():
    problem = _badly_scaled()
    plain = _solve(problem, hg.CG(max_iter=1000, tol=1e-12))
    estimated = _solve(problem, hg.CG(max_iter=1000, tol=1e-12, preconditioner=hg.Jacobi(samples=30)))
    assert estimated.info.converged and _close(estimated, problem)
    # The 30 probes are products too: the estimate pays for itself in iterations on this system.
    assert estimated.info.iterations + 30 < plain.info.iterations / 2


def test_hutchinson_is_exact_on_a_diagonal_matrix_and_unbiased_on_a_dense_one():
    d = torch.logspace(-2, 2, 8)
    diag = hutchinson_diagonal(lambda v: {"x": d * v["x"]}, {"x": torch.zeros(8)}, samples=1)
    assert torch.allclose(diag["x"], d, rtol=1e-15, atol=0)
    g = torch.Generator().manual_seed(0)
    b = torch.randn(8, 8, generator=g)
    a = b @ b.T + 8 * torch.eye(8)
    est = hutchinson_diagonal(lambda v: {"x": a @ v["x"]}, {"x": torch.zeros(8)}, samples=4000)
    # Standard error of entry j: (Σ_{l≠j} a_jl² / k)^½.
    off = ((a ** 2).sum(1) - a.diagonal() ** 2).sqrt() / 4000 ** 0.5
    assert ((est["x"] - a.diagonal()).abs() <= 4 * off).all()


def test_a_bad_user_diagonal_is_a_one_line_error():
    problem = _badly_scaled()
    with pytest.raises(hg.HypergradInputError, match=r"Jacobi diagonal\['w'\] has an entry -1"):
        _solve(problem, hg.CG(preconditioner=hg.Jacobi(diagonal=lambda p, h, b: {"w": -torch.ones(D)})))
    with pytest.raises(hg.HypergradInputError, match=r"Jacobi diagonal\['w'\] has shape \(3,\)"):
        _solve(problem, hg.CG(preconditioner=hg.Jacobi(diagonal=lambda p, h, b: {"w": torch.ones(3)})))
    with pytest.raises(hg.HypergradInputError, match=r"Jacobi\(samples=0\)"):
        hg.Jacobi(samples=0)


def test_auto_solves_a_small_system_densely_and_a_large_one_iteratively():
    problem = _badly_scaled()
    small = _solve(problem, hg.Auto(dense_below=D))
    large = _solve(problem, hg.Auto(dense_below=D - 1, iterative=hg.CG(max_iter=1000, tol=1e-12)))
    assert small.info.extra["chosen"] == "Exact" and small.info.hvps == D
    assert large.info.extra["chosen"] == "CG"
    assert _close(small, problem) and _close(large, problem)


def test_auto_on_a_condition_takes_gmres_and_refuses_a_symmetric_only_solver():
    problem = _badly_scaled()
    root = hg.Root(lambda p, h, b: {"w": torch.func.grad(lambda w: Ridge.inner({"w": w}, h, b))(p["w"])})
    kwargs = dict(outer_batch=problem.val, inner_batch=problem.train)
    res = hg.hypergradient(Ridge.outer, root, {"w": problem.solution()}, {"lam": problem.lam},
                           method=hg.Auto(dense_below=0), **kwargs)
    assert res.info.extra["chosen"] == "GMRES"
    with pytest.raises(hg.HypergradInputError, match=r"Auto\(iterative=CG\(\)\) needs a symmetric system"):
        hg.hypergradient(Ridge.outer, root, {"w": problem.solution()}, {"lam": problem.lam},
                         method=hg.Auto(dense_below=0, iterative=hg.CG()), **kwargs)
