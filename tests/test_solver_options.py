"""Solver options that change how the answer is computed but not the answer, through ``hg.hypergradient``:
the Hessian-vector product mode with every solver, on a non-quadratic loss (logistic regression, whose
dense reference comes from torch.func), and how often the residual is read on the host."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import Logistic, Ridge, rel_err

SOLVERS = [
    hg.Exact,
    lambda hvp: hg.CG(tol=1e-13, hvp=hvp),
    lambda hvp: hg.MINRES(tol=1e-13, hvp=hvp),
    lambda hvp: hg.FixedPoint(max_iter=200, tol=1e-13, hvp=hvp),
    lambda hvp: hg.Neumann(terms=60, lr="auto", hvp=hvp),
    lambda hvp: hg.StochasticNeumann(terms=60, lr="auto", hvp=hvp),
    lambda hvp: hg.GMRES(tol=1e-13, hvp=hvp),
    lambda hvp: hg.BiCGSTAB(tol=1e-13, hvp=hvp),
    lambda hvp: hg.NormalCG(tol=1e-13, max_iter=300, hvp=hvp),
]
NAMES = ["Exact", "CG", "MINRES", "FixedPoint", "Neumann", "StochasticNeumann", "GMRES", "BiCGSTAB", "NormalCG"]


@pytest.fixture(scope="module")
def logistic() -> tuple[Logistic, dict, torch.Tensor]:
    prob = Logistic(dtype=torch.float64)  # explicit: module fixtures run before the per-test default
    return prob, {"w": prob.solve()}, prob.hypergradient()


@pytest.mark.parametrize("hvp", ["reverse", "forward", "finite_difference"])
@pytest.mark.parametrize("make", SOLVERS, ids=NAMES)
def test_every_solver_with_every_product_mode_matches_the_dense_logistic_reference(logistic, make, hvp):
    prob, params, reference = logistic
    method = make(hvp=hvp)
    res = hg.hypergradient(prob.outer, prob.inner, params, {"theta": prob.theta}, outer_batch=prob.val,
                           inner_batch=lambda: prob.train, method=method)
    # Central differences of ∂_w f have an O(ε²) truncation on a non-quadratic loss: 8e-6 here at the library's
    # step ‖εv‖ = 0.01, where a one-sided difference (O(ε)) is off by about 1e-3.
    assert rel_err(res.grads["theta"], reference) < (3e-5 if hvp == "finite_difference" else 1e-8)
    assert res.info.converged in (True, None) and not res.info.diverged


@pytest.fixture(scope="module")
def slow_ridge() -> Ridge:
    """A ridge problem with 40 features (condition number about 14): the solvers need well over ten iterations."""
    return Ridge(n=120, d=40, seed=4, dtype=torch.float64)


CHECKED = [
    lambda every: hg.CG(max_iter=1000, tol=1e-12, check_every=every),
    lambda every: hg.MINRES(max_iter=1000, tol=1e-12, check_every=every),
    lambda every: hg.FixedPoint(max_iter=20000, tol=1e-12, check_every=every),
    lambda every: hg.GMRES(max_iter=1000, tol=1e-12, restart=15, check_every=every),
    lambda every: hg.BiCGSTAB(max_iter=1000, tol=1e-12, check_every=every),
    lambda every: hg.NormalCG(max_iter=1000, tol=1e-12, check_every=every),
]


@pytest.mark.parametrize("make", CHECKED, ids=["CG", "MINRES", "FixedPoint", "GMRES", "BiCGSTAB", "NormalCG"])
def test_check_every_ten_through_hypergradient_gives_the_same_answer_and_record(slow_ridge, make):
    prob = slow_ridge
    args = (prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam})
    runs = {every: hg.hypergradient(*args, outer_batch=prob.val, inner_batch=prob.train, method=make(every))
            for every in (1, 10)}
    one, ten = runs[1], runs[10]
    assert one.info.converged and ten.info.converged
    assert one.info.iterations > 20  # several host-read periods
    assert ten.info.iterations == one.info.iterations and ten.info.residual_trace == one.info.residual_trace
    assert rel_err(ten.grads["lam"], one.grads["lam"]) < 1e-12
    assert rel_err(one.grads["lam"], prob.hypergradient()) < 1e-6
    # Between reads the frozen iterations still cost products, at most one period's worth.
    per_iteration = one.info.hvps / one.info.iterations
    assert one.info.hvps <= ten.info.hvps <= one.info.hvps + 10 * per_iteration + 1
