"""Warm starts: the previous adjoint as the next solve's starting guess, against closed-form answers."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from hypergrad.solvers import warm_start
from tests.problems import Ridge

# Per-feature ridge on 60 features whose penalties span two decades: CG needs tens of products
# from zero, so a good starting guess has something to save.
D = 60


def _ridge() -> Ridge:
    problem = Ridge(n=120, d=D, seed=3)
    problem.lam = torch.logspace(-1, 1, D)
    return problem


def _closed_form(problem: Ridge, lam: torch.Tensor) -> torch.Tensor:
    a = problem.matrix(lam)
    w = torch.linalg.solve(a, problem.X.T @ problem.y)
    g = problem.Xv.T @ (problem.Xv @ w - problem.yv)
    return -w * torch.linalg.solve(a, g)


def _sequence(problem: Ridge, method: object, warm: bool) -> tuple[list[torch.Tensor], int]:
    """Hypergradients along an outer path λ_t = λ_0 (1 + 0.02 t), each at the exact inner solution."""
    grads, products, adjoint = [], 0, None
    for t in range(6):
        lam = problem.lam * (1 + 0.02 * t)
        res = hg.hypergradient(Ridge.outer, Ridge.inner, {"w": problem.solution(lam)}, {"lam": lam},
                               outer_batch=problem.val, inner_batch=problem.train, method=method,
                               warm_start=adjoint if warm else None)
        assert res.info.converged, res.info.message
        grads.append(res.grads["lam"])
        products += res.info.hvps
        adjoint = res.adjoint
    return grads, products


METHODS = [hg.CG(max_iter=500, tol=1e-13), hg.MINRES(max_iter=500, tol=1e-13),
           hg.GMRES(max_iter=500, tol=1e-13, restart=80), hg.BiCGSTAB(max_iter=500, tol=1e-13),
           hg.FixedPoint(max_iter=20000, tol=1e-13)]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_a_warm_started_sequence_reaches_the_same_answers_with_fewer_products(method):
    problem = _ridge()
    cold, cold_products = _sequence(problem, method, warm=False)
    warm, warm_products = _sequence(problem, method, warm=True)
    for t, (c, w) in enumerate(zip(cold, warm)):
        exact = _closed_form(problem, problem.lam * (1 + 0.02 * t))
        assert torch.allclose(w, exact, rtol=0, atol=1e-10 * float(exact.abs().max()))
        assert torch.allclose(w, c, rtol=0, atol=1e-10 * float(exact.abs().max()))
    assert warm_products < cold_products


def test_the_adjoint_solves_the_hessian_system():
    problem = _ridge()
    res = hg.hypergradient(Ridge.outer, Ridge.inner, {"w": problem.solution()}, {"lam": problem.lam},
                           outer_batch=problem.val, inner_batch=problem.train, method=hg.CG(max_iter=500, tol=1e-13))
    w = problem.solution()
    rhs = problem.Xv.T @ (problem.Xv @ w - problem.yv)
    assert torch.allclose(res.adjoint["w"], torch.linalg.solve(problem.matrix(), rhs), rtol=1e-9, atol=0)
    assert not res.adjoint["w"].requires_grad


def test_the_guess_is_rescaled_by_the_residual_minimising_scalar():
    a = torch.diag(torch.tensor([1.0, 2.0, 4.0]))
    b = {"x": torch.tensor([1.0, 1.0, 1.0])}
    solution = {"x": torch.linalg.solve(a, b["x"])}
    x, r, alpha = warm_start(lambda v: {"x": a @ v["x"]}, b, _scaled(solution, 5.0))
    assert float(alpha) == pytest.approx(0.2)
    assert torch.allclose(x["x"], solution["x"]) and float(r["x"].abs().max()) < 1e-12


def _scaled(d: dict[str, torch.Tensor], s: float) -> dict[str, torch.Tensor]:
    return {k: v * s for k, v in d.items()}


@pytest.mark.parametrize("guess", ["zero", "nan", "orthogonal"])
def test_a_useless_guess_is_dropped_and_the_answer_unchanged(guess):
    problem = _ridge()
    w = problem.solution()
    rhs = problem.Xv.T @ (problem.Xv @ w - problem.yv)
    hvp = lambda v: {"w": problem.matrix() @ v["w"]}  # noqa: E731
    x0 = {"zero": torch.zeros(D), "nan": torch.full((D,), float("nan"))}.get(guess)
    if x0 is None:  # a guess whose product is orthogonal to the right-hand side: α = 0
        y = torch.randn(D)
        ay = y - rhs * (rhs @ y) / (rhs @ rhs)
        x0 = torch.linalg.solve(problem.matrix(), ay)
    x, r, alpha = warm_start(hvp, {"w": rhs}, {"w": x0})
    assert abs(float(alpha)) < 1e-12 and float(x["w"].abs().max()) < 1e-12
    res = hg.hypergradient(Ridge.outer, Ridge.inner, {"w": w}, {"lam": problem.lam}, outer_batch=problem.val,
                           inner_batch=problem.train, method=hg.CG(max_iter=500, tol=1e-13), warm_start={"w": x0})
    assert torch.allclose(res.grads["lam"], _closed_form(problem, problem.lam), rtol=0, atol=1e-10)
    assert res.info.extra["warm_start_scale"] == pytest.approx(0.0, abs=1e-12)


def test_a_condition_warm_starts_too():
    """A root condition (F = ∂_w f, the gradient) with GMRES: the same adjoint, fewer products."""
    problem = _ridge()
    root = hg.Root(lambda p, h, b: {"w": torch.func.grad(lambda w: Ridge.inner({"w": w}, h, b))(p["w"])})
    kwargs = dict(outer_batch=problem.val, inner_batch=problem.train, method=hg.GMRES(max_iter=500, tol=1e-13, restart=80))
    first = hg.hypergradient(Ridge.outer, root, {"w": problem.solution()}, {"lam": problem.lam}, **kwargs)
    lam = problem.lam * 1.02
    cold = hg.hypergradient(Ridge.outer, root, {"w": problem.solution(lam)}, {"lam": lam}, **kwargs)
    warm = hg.hypergradient(Ridge.outer, root, {"w": problem.solution(lam)}, {"lam": lam}, warm_start=first.adjoint,
                            **kwargs)
    assert torch.allclose(warm.grads["lam"], _closed_form(problem, lam), rtol=0, atol=1e-10)
    assert warm.info.hvps < cold.info.hvps


def test_backward_takes_the_warm_start_and_returns_the_adjoint():
    problem = _ridge()
    lam = problem.lam.clone().requires_grad_()
    first = hg.backward(Ridge.outer, Ridge.inner, {"w": problem.solution()}, {"lam": lam}, outer_batch=problem.val,
                        inner_batch=problem.train, method=hg.CG(max_iter=500, tol=1e-13))
    lam.grad = None
    again = hg.backward(Ridge.outer, Ridge.inner, {"w": problem.solution()}, {"lam": lam}, outer_batch=problem.val,
                        inner_batch=problem.train, method=hg.CG(max_iter=500, tol=1e-13), warm_start=first.adjoint)
    assert torch.allclose(lam.grad, _closed_form(problem, problem.lam), rtol=0, atol=1e-10)
    assert again.info.iterations <= 1


def test_a_warm_start_unlike_params_is_a_one_line_error():
    problem = _ridge()
    with pytest.raises(hg.HypergradInputError, match=r"warm_start\['w'\] has shape \(3,\)"):
        hg.hypergradient(Ridge.outer, Ridge.inner, {"w": problem.solution()}, {"lam": problem.lam},
                         outer_batch=problem.val, inner_batch=problem.train, warm_start={"w": torch.zeros(3)})
