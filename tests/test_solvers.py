"""The linear solvers on explicit matrices, against torch.linalg.solve."""

from __future__ import annotations

import warnings

import pytest
import torch

from hypergrad import solvers
from tests.problems import rel_err


def _system(eigs: torch.Tensor, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g))
    a = q @ torch.diag(eigs) @ q.T
    b = torch.randn(len(eigs), generator=g)
    # Split over two dict entries so the solvers see a real parameter dict.
    k = len(eigs) // 3

    def split(x):
        return {"a": x[:k].reshape(k), "b": x[k:]}

    def matvec(v):
        return split(a @ torch.cat([v["a"], v["b"]]))

    return a, b, split, matvec


def _flat(d):
    return torch.cat([d["a"], d["b"]])


def test_cg_solves_a_positive_definite_system_and_records_its_residuals():
    a, b, split, matvec = _system(torch.linspace(0.5, 20.0, 30))
    x, info = solvers.conjugate_gradient(matvec, split(b), max_iter=200, tol=1e-12)
    assert rel_err(_flat(x), torch.linalg.solve(a, b)) < 1e-10
    assert info.converged and not info.negative_curvature
    assert info.iterations <= 30 + 5
    assert len(info.residual_trace) == info.iterations + 1
    assert info.residual_norm == pytest.approx(float(torch.linalg.vector_norm(a @ _flat(x) - b)), rel=1e-3, abs=1e-12)


def test_cg_with_damping_solves_the_shifted_system():
    a, b, split, matvec = _system(torch.linspace(0.5, 20.0, 30))
    x, info = solvers.conjugate_gradient(matvec, split(b), tol=1e-12, damping=0.7)
    assert rel_err(_flat(x), torch.linalg.solve(a + 0.7 * torch.eye(30), b)) < 1e-10


def test_cg_preconditioner_and_warm_start_reach_the_same_solution_in_fewer_iterations():
    eigs = torch.logspace(-2, 2, 40)
    g = torch.Generator().manual_seed(1)
    off = 1e-3 * torch.randn(40, 40, generator=g).tril(-1)
    a = torch.diag(eigs) + off + off.T  # badly scaled, nearly diagonal: what Jacobi is for
    b = torch.randn(40, generator=g)
    matvec = lambda v: {"x": a @ v["x"]}  # noqa: E731
    plain_x, plain = solvers.conjugate_gradient(matvec, {"x": b}, max_iter=500, tol=1e-10)
    jacobi = lambda r: {"x": r["x"] / eigs}  # noqa: E731
    pre_x, pre = solvers.conjugate_gradient(matvec, {"x": b}, max_iter=500, tol=1e-10, preconditioner=jacobi)
    ref = torch.linalg.solve(a, b)
    assert rel_err(plain_x["x"], ref) < 1e-8 and rel_err(pre_x["x"], ref) < 1e-8
    assert pre.iterations < plain.iterations
    warm_x, warm = solvers.conjugate_gradient(matvec, {"x": b}, max_iter=500, tol=1e-10, x0={"x": ref + 1e-6})
    assert warm.iterations < plain.iterations and rel_err(warm_x["x"], ref) < 1e-8


def test_cg_reports_negative_curvature_on_an_indefinite_system():
    a, b, split, matvec = _system(torch.cat([torch.linspace(-3, -1, 5), torch.linspace(1, 10, 25)]))
    _, info = solvers.conjugate_gradient(matvec, split(b), max_iter=100, tol=1e-12)
    assert info.negative_curvature and not info.converged
    assert "MINRES" in info.message


def test_minres_solves_a_symmetric_indefinite_system():
    a, b, split, matvec = _system(torch.cat([torch.linspace(-3, -1, 5), torch.linspace(1, 10, 25)]))
    x, info = solvers.minres(matvec, split(b), max_iter=200, tol=1e-12)
    assert rel_err(_flat(x), torch.linalg.solve(a, b)) < 1e-9
    assert info.converged
    assert info.residual_norm == pytest.approx(float(torch.linalg.vector_norm(a @ _flat(x) - b)), rel=1e-2, abs=1e-11)
    # MINRES minimises the residual over a growing Krylov space: its trace never increases.
    trace = torch.tensor(info.residual_trace)
    assert (trace[1:] <= trace[:-1] * (1 + 1e-12)).all()


def test_minres_stops_cleanly_when_the_krylov_space_is_exhausted():
    eigs = torch.tensor([2.0] * 10 + [5.0] * 10)  # two distinct eigenvalues: exact in two steps
    a, b, split, matvec = _system(eigs)
    x, info = solvers.minres(matvec, split(b), max_iter=50, tol=1e-14)
    assert torch.isfinite(_flat(x)).all()
    assert rel_err(_flat(x), torch.linalg.solve(a, b)) < 1e-10
    assert info.iterations <= 3


def test_neumann_series_equals_its_closed_form_partial_sum():
    a, b, split, matvec = _system(torch.linspace(0.5, 4.0, 12))
    gamma, terms = 0.2, 7
    x, info = solvers.neumann_series(matvec, split(b), terms=terms, lr=gamma)
    m = torch.eye(12) - gamma * a
    ref = gamma * sum(torch.linalg.matrix_power(m, k) for k in range(terms + 1)) @ b
    assert rel_err(_flat(x), ref) < 1e-12
    assert info.iterations == terms and len(info.residual_trace) == terms + 1 and not info.diverged


def test_neumann_series_warns_when_its_terms_grow():
    _, b, split, matvec = _system(torch.linspace(0.5, 4.0, 12))
    with pytest.warns(RuntimeWarning, match="lr='auto'"):
        _, info = solvers.neumann_series(matvec, split(b), terms=20, lr=1.0)  # 1 − 4γ = −3: grows
    assert info.diverged and "grow" in info.message


def test_power_iteration_finds_the_largest_eigenvalue():
    _, b, split, matvec = _system(torch.tensor([0.5, 1.0, 2.0, 3.0, 7.5, 1.5]))
    lam = solvers.largest_eigenvalue(matvec, split(b), iters=200)
    assert float(lam) == pytest.approx(7.5, rel=1e-6)


def test_fixed_point_meets_its_tolerance_and_measures_the_residual():
    a, b, split, matvec = _system(torch.linspace(0.5, 4.0, 12))
    x, info = solvers.fixed_point(matvec, split(b), lr=0.25, max_iter=2000, tol=1e-11)
    assert info.converged
    assert rel_err(_flat(x), torch.linalg.solve(a, b)) < 1e-9
    assert info.residual_norm <= 1e-11 * float(torch.linalg.vector_norm(b)) * (1 + 1e-9)


def test_fixed_point_reports_divergence():
    _, b, split, matvec = _system(torch.linspace(0.5, 4.0, 12))
    _, info = solvers.fixed_point(matvec, split(b), lr=1.0, max_iter=30, tol=1e-11)
    assert not info.converged and info.diverged and "lower lr" in info.message


def test_dense_solve_reports_a_singular_system():
    eigs = torch.cat([torch.zeros(2), torch.linspace(1, 3, 10)])
    _, b, split, matvec = _system(eigs)
    _, info = solvers.dense_solve(matvec, split(b))
    assert info.converged is False
    assert info.residual_norm > 1e-6 and "singular" in info.message


def test_neumann_series_records_mild_growth_without_warning():
    b = {"x": torch.ones(4)}
    negative = lambda v: {"x": -0.05 * v["x"]}  # noqa: E731  (each term grows by 1 + 0.2·0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = solvers.neumann_series(negative, b, terms=10, lr=0.2)
    assert info.diverged and info.extra["growth"] == pytest.approx(1.01**10)
    with pytest.warns(RuntimeWarning, match="negative curvature"):
        solvers.neumann_series(negative, b, terms=100, lr=0.2)


_CHECKED = {
    "cg": lambda mv, b, **kw: solvers.conjugate_gradient(mv, b, **kw),
    "minres": lambda mv, b, **kw: solvers.minres(mv, b, **kw),
    "fixed_point": lambda mv, b, **kw: solvers.fixed_point(mv, b, lr=0.25, **kw),
}


@pytest.mark.parametrize("name", list(_CHECKED))
def test_reading_the_residual_every_ten_iterations_gives_the_same_solve(name):
    """check_every=10 (the GPU default) freezes converged iterations on the device: the solution, the
    iteration count and the trace equal those of reading every iteration, and the loop still stops
    within ten products of convergence instead of running to max_iter."""
    a, b, split, matvec = _system(torch.linspace(0.5, 4.0, 30))
    runs = {every: _CHECKED[name](matvec, split(b), max_iter=500, tol=1e-10, check_every=every) for every in (1, 10)}
    (x1, info1), (x10, info10) = runs[1], runs[10]
    assert info1.converged and info10.converged
    assert 10 < info1.iterations < 200  # several check periods, well short of max_iter
    assert info10.iterations == info1.iterations and info10.residual_trace == info1.residual_trace
    assert rel_err(_flat(x10), _flat(x1)) < 1e-14
    assert rel_err(_flat(x1), torch.linalg.solve(a, b)) < 1e-8
    assert info1.hvps == info1.iterations
    assert info1.hvps <= info10.hvps <= info1.hvps + 10
