"""The explicit part ∂_λF of every estimator, on an outer loss that depends on λ.

A ridge problem whose validation loss carries a penalty ½c Σ λ_j w_j² has ∂_λF = ½c w² ≠ 0, so an
estimator that drops ∂_λF, or reports it wrongly in ``res.direct``, differs from the closed forms
written here by hand (the implicit answer, one explicit SGD step, plain gradient descent).
"""

from __future__ import annotations

import time

import pytest
import torch

import hypergrad as hg
from tests.problems import PenalisedRidge, rel_err

IMPLICIT = [
    hg.Exact(),
    hg.CG(tol=1e-14),
    hg.MINRES(tol=1e-14),
    hg.FixedPoint(max_iter=300, tol=1e-13),
    hg.Neumann(terms=100, lr="auto"),
    hg.StochasticNeumann(terms=100, lr="auto"),
    hg.GMRES(tol=1e-14),
    hg.BiCGSTAB(tol=1e-14),
    hg.NormalCG(tol=1e-14, max_iter=300),
]


def _solve(prob: PenalisedRidge, method: object, params: dict | None = None, inner: object = None) -> hg.Hypergradient:
    return hg.hypergradient(prob.outer, prob.inner if inner is None else inner,
                            {"w": prob.solution()} if params is None else params, {"lam": prob.lam},
                            outer_batch=prob.val, inner_batch=prob.train, method=method)


@pytest.mark.parametrize("per_feature", [True, False], ids=["per-feature", "scalar"])
@pytest.mark.parametrize("method", IMPLICIT, ids=lambda m: type(m).__name__)
def test_implicit_estimators_add_the_direct_term_and_report_it(method, per_feature):
    prob = PenalisedRidge(per_feature=per_feature)
    w = prob.solution()
    res = _solve(prob, method)
    expected_direct = prob.direct(w)
    assert float(expected_direct.abs().sum()) > 0.1  # the term this test is about is not negligible
    assert rel_err(res.direct["lam"].reshape(prob.lam.shape), expected_direct) < 1e-12
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-8
    expected_value = _outer_value(prob, w)
    assert float(res.outer_value) == pytest.approx(expected_value, rel=1e-12)


def _outer_value(prob: PenalisedRidge, w: torch.Tensor) -> float:
    """F(w, λ) by hand."""
    return float(0.5 * ((prob.Xv @ w - prob.yv) ** 2).sum() + 0.5 * prob.c * (prob.lam * w**2).sum())


def test_a_root_condition_adds_the_direct_term():
    prob = PenalisedRidge()
    w = prob.solution()
    grad_f = hg.Root(lambda p, h, b: {"w": b[0].T @ (b[0] @ p["w"] - b[1]) + h["lam"] * p["w"]})
    res = _solve(prob, hg.GMRES(tol=1e-14), inner=grad_f)
    assert rel_err(res.direct["lam"], prob.direct(w)) < 1e-12
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-8


def test_first_order_is_the_analytic_direct_gradient():
    prob = PenalisedRidge()
    w = prob.solution() + 0.1  # anywhere: FirstOrder does not need a stationary point
    res = _solve(prob, hg.FirstOrder(), params={"w": w})
    assert rel_err(res.grads["lam"], 0.5 * prob.c * w**2) < 1e-14
    assert torch.equal(res.direct["lam"], res.grads["lam"])
    assert res.info.hvps == 0 and res.info.mixed_products == 0


@pytest.mark.parametrize("fd", [False, True], ids=["exact", "finite-difference"])
def test_one_step_is_the_closed_form_through_one_explicit_step(fd):
    # w' = w − ξ∇_w f(w); dF(w', λ)/dλ = ½c w'² − ξ w ⊙ ∇_{w'}F(w'), since ∂w'_j/∂λ_j = −ξ w_j.
    prob = PenalisedRidge()
    w = torch.zeros(6) + 0.2  # not the inner solution: the step moves w
    xi = 0.004
    stepped = w - xi * (prob.X.T @ (prob.X @ w - prob.y) + prob.lam * w)
    expected = 0.5 * prob.c * stepped**2 - xi * w * prob.outer_grad(stepped)
    res = _solve(prob, hg.OneStep(lr=xi, finite_difference=fd), params={"w": w})
    assert rel_err(res.grads["lam"], expected) < 1e-10
    assert rel_err(res.direct["lam"], 0.5 * prob.c * stepped**2) < 1e-12
    assert float(res.outer_value) == pytest.approx(_outer_value(prob, stepped), rel=1e-12)
    # Central differences cost two gradients of ∂_λf for the mixed product; the exact one, a double backward.
    assert (res.info.gradients, res.info.mixed_products) == ((4 if fd else 2), 1)


def test_unrolled_reports_the_direct_term_at_the_unrolled_weights():
    prob = PenalisedRidge()
    w, lr, steps = torch.zeros(6), 0.005, 20
    for _ in range(steps):
        w = w - lr * (prob.X.T @ (prob.X @ w - prob.y) + prob.lam * w)
    res = _solve(prob, hg.Unrolled(steps=steps, lr=lr), params={"w": torch.zeros(6)})
    assert rel_err(res.direct["lam"], 0.5 * prob.c * w**2) < 1e-10
    assert float(res.outer_value) == pytest.approx(_outer_value(prob, w), rel=1e-10)


def test_info_seconds_is_the_wall_time_of_the_call():
    prob = PenalisedRidge()
    start = time.perf_counter()
    res = _solve(prob, hg.CG(tol=1e-14))
    elapsed = time.perf_counter() - start
    assert 0 < res.info.seconds <= elapsed
