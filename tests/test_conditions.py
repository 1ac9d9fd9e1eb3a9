"""Implicit differentiation of roots and fixed points (``hg.Root``, ``hg.FixedPointMap``) against
independent answers: closed forms on the active set (lasso, non-negative ridge), autograd through a long
unrolled forward iteration (a deep equilibrium layer), a dense solve (a non-symmetric Nash game)."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from benchmarks._deq import Equilibrium
from tests.condition_problems import Lasso, Nash, NonNegativeRidge
from tests.problems import Ridge, rel_err

TIGHT = 1e-13
SOLVERS = {
    "GMRES": hg.GMRES(tol=TIGHT, max_iter=200),
    "GMRES-restart-4": hg.GMRES(tol=TIGHT, max_iter=400, restart=4),
    "BiCGSTAB": hg.BiCGSTAB(tol=TIGHT, max_iter=200),
    "NormalCG": hg.NormalCG(tol=TIGHT, max_iter=400),
    "Exact": hg.Exact(),
}
FIXED_POINT_SOLVERS = {**SOLVERS, "FixedPoint": hg.FixedPoint(tol=TIGHT, max_iter=2000)}


def _flat(d: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in d.values()])


@pytest.mark.parametrize("name", list(FIXED_POINT_SOLVERS))
def test_lasso_fixed_point_hypergradient_matches_the_closed_form_on_the_active_set(name):
    prob = Lasso()
    res = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"w": prob.w}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=FIXED_POINT_SOLVERS[name])
    assert res.info.converged is not False, res.info.message
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-8
    assert torch.equal(res.grads["lam"][~prob.support], torch.zeros(int((~prob.support).sum())))


@pytest.mark.parametrize("name", list(SOLVERS))
def test_non_negative_ridge_root_hypergradient_matches_the_closed_form_on_the_active_set(name):
    prob = NonNegativeRidge()
    res = hg.hypergradient(prob.outer, hg.Root(prob.F), {"w": prob.w}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=SOLVERS[name])
    assert res.info.converged, res.info.message
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-8


@pytest.mark.parametrize("name", list(FIXED_POINT_SOLVERS))
def test_equilibrium_layer_gradient_matches_autograd_through_a_long_unrolled_forward(name):
    prob = Equilibrium()
    res = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"z": prob.z}, prob.theta,
                           inner_batch=prob.x, method=FIXED_POINT_SOLVERS[name])
    assert res.info.converged is not False, res.info.message
    assert rel_err(_flat(res.grads), _flat(prob.unrolled_hypergradient())) < 1e-10


def test_equilibrium_layer_through_implicit_and_backward():
    """``implicit`` attaches z* to the layer's weights; ``.backward()`` on any loss of it gives the gradient."""
    prob = Equilibrium()
    theta = {k: v.clone().requires_grad_() for k, v in prob.theta.items()}
    infos = []
    z = hg.implicit(hg.FixedPointMap(prob.T), {"z": prob.z}, theta, prob.x, on_solve=infos.append)
    assert torch.equal(z["z"], prob.z)
    prob.outer(z, theta).backward()
    ref = prob.unrolled_hypergradient()
    assert rel_err(_flat({k: v.grad for k, v in theta.items()}), _flat(ref)) < 1e-10
    assert len(infos) == 1 and infos[0].method == "GMRES" and infos[0].converged


@pytest.mark.parametrize("name", list(SOLVERS))
def test_nonsymmetric_nash_equilibrium_matches_the_dense_solve(name):
    prob = Nash()
    assert rel_err(prob.M, prob.M.T) > 0.5
    res = hg.hypergradient(prob.outer, hg.Root(prob.F), prob.w, prob.h, method=SOLVERS[name])
    assert res.info.converged, res.info.message
    assert rel_err(_flat(res.grads), prob.hypergradient()) < 1e-9


def test_nash_root_by_richardson_iteration_with_a_stable_step():
    prob = Nash()
    mu = torch.linalg.eigvals(prob.M)
    lr = float((mu.real / mu.abs() ** 2).min())  # |1 − γμ| < 1 for every eigenvalue μ
    res = hg.hypergradient(prob.outer, hg.Root(prob.F), prob.w, prob.h,
                           method=hg.FixedPoint(lr=lr, tol=TIGHT, max_iter=5000))
    assert res.info.converged, res.info.message
    assert rel_err(_flat(res.grads), prob.hypergradient()) < 1e-9


def test_backward_accumulates_the_root_hypergradient_into_grad():
    prob = Nash()
    h = {k: v.clone().requires_grad_() for k, v in prob.h.items()}
    hg.backward(prob.outer, hg.Root(prob.F), prob.w, h, method=hg.GMRES(tol=TIGHT))
    assert rel_err(torch.cat([h["a"].grad, h["c"].grad]), prob.hypergradient()) < 1e-9


def test_torch_func_grad_through_implicit_of_a_root():
    prob = Nash()

    def outer_of(a: torch.Tensor) -> torch.Tensor:
        h = {"a": a, "c": prob.h["c"]}
        return prob.outer(hg.implicit(hg.Root(prob.F), prob.w, h, method=hg.GMRES(tol=TIGHT, max_iter=30)), h)

    got = torch.func.grad(outer_of)(prob.h["a"])
    assert rel_err(got, prob.hypergradient()[: prob.nx]) < 1e-9


def test_the_gradient_root_of_a_loss_gives_the_loss_hypergradient():
    """inner_loss is the special case F = ∂_w f: the same answer through Root and through the loss."""
    prob = Ridge()

    def stationarity(p: dict, h: dict, batch: tuple) -> dict:
        X, y = batch
        return {"w": X.T @ (X @ p["w"] - y) + h["lam"] * p["w"]}

    res = hg.hypergradient(prob.outer, hg.Root(stationarity), {"w": prob.solution()}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=hg.GMRES(tol=TIGHT))
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-9


@pytest.mark.parametrize("method", [hg.GMRES(tol=TIGHT), hg.BiCGSTAB(tol=TIGHT), hg.NormalCG(tol=TIGHT)],
                         ids=lambda m: type(m).__name__)
def test_nonsymmetric_solvers_also_solve_the_hessian_system_of_a_loss(method):
    prob = Ridge()
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=method)
    assert res.info.converged and rel_err(res.grads["lam"], prob.hypergradient()) < 1e-9


def test_products_are_one_vjp_per_iteration_and_counted():
    prob = Equilibrium()
    res = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"z": prob.z}, prob.theta, inner_batch=prob.x,
                           method=hg.GMRES(tol=TIGHT, restart=50))
    info = res.info
    assert info.extra["vjps"] == info.iterations and info.extra["jvps"] == 0 and info.mixed_products == 1


# ---- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    (lambda p, h, b: {"v": p["x"], "y": p["y"]}, "keys differ"),
    (lambda p, h, b: {"x": p["x"][:2], "y": p["y"]}, r"shape \(2,\); expected \(4,\)"),
    (lambda p, h, b: p["x"], "returned a Tensor; expected a dict like params"),
    (lambda p, h, b: {"x": p["x"], "y": p["y"].long()}, "floating dtype"),
])
def test_a_condition_returning_the_wrong_keys_or_shapes_is_a_one_line_input_error(bad, match):
    prob = Nash()
    with pytest.raises(hg.HypergradInputError, match=match):
        hg.hypergradient(prob.outer, hg.Root(bad), prob.w, prob.h)


def test_a_condition_takes_only_solvers_that_need_no_symmetry():
    prob = Nash()
    for method in (hg.CG(), hg.MINRES(), hg.Neumann(), hg.StochasticNeumann(), hg.OneStep(), hg.Unrolled()):
        with pytest.raises(hg.HypergradInputError, match="not symmetric: use one of"):
            hg.hypergradient(prob.outer, hg.Root(prob.F), prob.w, prob.h, method=method)
    with pytest.raises(hg.HypergradInputError, match=r"implicit\(method=CG"):
        hg.implicit(hg.Root(prob.F), prob.w, prob.h, method=hg.CG())
    with pytest.raises(hg.HypergradInputError, match="expected a callable"):
        hg.Root(3)


def test_a_fixed_point_map_that_is_not_contractive_is_reported_by_the_fixed_point_solver():
    """T(z) = 1.5 z + c has the fixed point z* = −2c, but the adjoint iteration u ← 1.5u + v diverges."""
    c = torch.randn(6)
    T = hg.FixedPointMap(lambda p, h, b: {"z": 1.5 * p["z"] + h["c"]})
    outer = lambda p, h, b: (p["z"] ** 2).sum()  # noqa: E731
    res = hg.hypergradient(outer, T, {"z": -2 * c}, {"c": c}, method=hg.FixedPoint(max_iter=40))
    assert res.info.diverged and res.info.converged is False
    assert "not contractive" in res.info.message and res.info.extra["contraction"] == pytest.approx(1.5)
    fine = hg.hypergradient(outer, T, {"z": -2 * c}, {"c": c}, method=hg.GMRES(tol=TIGHT))
    assert fine.info.converged and rel_err(fine.grads["c"], -2 * (2 * -2 * c)) < 1e-12


@pytest.mark.parametrize("method", [hg.GMRES(max_iter=2), hg.BiCGSTAB(max_iter=1), hg.NormalCG(max_iter=2),
                                    hg.FixedPoint(max_iter=2)], ids=lambda m: type(m).__name__)
def test_non_convergence_is_reported_in_info(method):
    prob = Equilibrium()
    res = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"z": prob.z}, prob.theta, inner_batch=prob.x,
                           method=method)
    assert res.info.converged is False
    assert "stopped after" in res.info.message
