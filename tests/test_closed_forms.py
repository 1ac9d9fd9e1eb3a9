"""Every implicit estimator against answers derived without the library: ridge in closed form,
logistic regression with the dense Hessian from torch.func, and finite differences of the outer
objective through a tightly solved inner problem."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import Logistic, Ridge, rel_err

EXACT_METHODS = [
    hg.Exact(),
    hg.CG(max_iter=100, tol=1e-14),
    hg.MINRES(max_iter=100, tol=1e-14),
    hg.FixedPoint(lr="auto", max_iter=20000, tol=1e-14),
    hg.Neumann(terms=3000, lr="auto"),
    hg.CG(max_iter=100, tol=1e-14, hvp="forward"),
]


@pytest.mark.parametrize("per_feature", [True, False], ids=["per-feature", "scalar"])
@pytest.mark.parametrize("method", EXACT_METHODS, ids=lambda m: f"{type(m).__name__}-{getattr(m, 'hvp', '')}")
def test_ridge_hypergradient_matches_closed_form(method, per_feature):
    prob = Ridge(per_feature=per_feature)
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=method)
    assert res.grads["lam"].shape == prob.lam.shape
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-8
    assert res.info.converged in (True, None)


def test_ridge_finite_difference_hvp_is_accurate_to_its_truncation():
    prob = Ridge()
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train,
                           method=hg.CG(tol=1e-12, hvp="finite_difference"))
    # A quadratic has no O(ε²) term: central differences are exact up to round-off.
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-7


@pytest.mark.parametrize("method", [hg.Exact(), hg.CG(tol=1e-14), hg.MINRES(tol=1e-14)], ids=lambda m: type(m).__name__)
def test_logistic_hypergradient_matches_dense_ift(method):
    prob = Logistic()
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solve()}, {"theta": prob.theta},
                           outer_batch=prob.val, inner_batch=prob.train, method=method)
    assert rel_err(res.grads["theta"], prob.hypergradient()) < 1e-8


def test_logistic_hypergradient_matches_finite_differences_of_the_outer_objective():
    prob = Logistic()
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solve()}, {"theta": prob.theta},
                           outer_batch=prob.val, inner_batch=prob.train, method=hg.CG(tol=1e-14))

    def outer_at(theta: torch.Tensor) -> float:
        return float(prob.outer({"w": prob.solve(theta)}, {}, prob.val))

    h = 1e-5
    fd = torch.stack([torch.tensor((outer_at(prob.theta + h * e) - outer_at(prob.theta - h * e)) / (2 * h))
                      for e in torch.eye(len(prob.theta))])
    assert rel_err(res.grads["theta"], fd) < 1e-7


def test_backward_accumulates_the_hypergradient_into_grad():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    lam.grad = torch.ones_like(lam)
    res = hg.backward(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": lam},
                      outer_batch=prob.val, inner_batch=prob.train, method=hg.CG(tol=1e-14))
    assert rel_err(lam.grad, prob.hypergradient() + 1) < 1e-8
    assert torch.allclose(lam.grad - 1, res.grads["lam"], rtol=0, atol=1e-14)


def test_backward_lets_a_torch_optimizer_lower_the_validation_loss():
    prob = Ridge()
    log_lam = prob.lam.log().clone().requires_grad_()
    opt = torch.optim.Adam([log_lam], lr=0.1)
    inner = lambda p, h, b: Ridge.inner(p, {"lam": h["log_lam"].exp()}, b)  # noqa: E731
    losses = []
    for _ in range(20):
        w = prob.solution(log_lam.detach().exp())
        opt.zero_grad()
        res = hg.backward(prob.outer, inner, {"w": w}, {"log_lam": log_lam}, outer_batch=prob.val,
                          inner_batch=prob.train, method=hg.CG(tol=1e-12))
        losses.append(float(res.outer_value))
        opt.step()
    assert losses[-1] < 0.95 * losses[0]
