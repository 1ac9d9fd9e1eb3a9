"""Damping δ at the hypergradient level: every method that takes it against the damped ridge closed form.

Each damped estimator computes ∂_λF − (∂²_{λw} f)ᵀ (H + δI)⁻¹ ∇_wF. For ridge, H = XᵀX + diag λ and
∂²_{λw} f = diag w, so the value is ∂_λF − w ⊙ (XᵀX + diag λ + δI)⁻¹ ∇_wF, solved here with
torch.linalg.solve. δ = 7 moves every component by several percent, so a solver that ignores δ fails.
"""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from hypergrad import solvers
from tests.problems import PenalisedRidge, rel_err

DELTA = 7.0


def _root(prob: PenalisedRidge) -> hg.Root:
    """The ridge stationarity condition ∇_w f = 0, a root whose Jacobian is the Hessian."""
    return hg.Root(lambda p, h, b: {"w": b[0].T @ (b[0] @ p["w"] - b[1]) + h["lam"] * p["w"]})


def _hypergradient(prob: PenalisedRidge, method: object, inner: object = None) -> hg.Hypergradient:
    return hg.hypergradient(prob.outer, prob.inner if inner is None else inner, {"w": prob.solution()},
                            {"lam": prob.lam}, outer_batch=prob.val, inner_batch=prob.train, method=method)


DAMPED = [
    hg.Exact(damping=DELTA),
    hg.CG(tol=1e-14, damping=DELTA),
    hg.MINRES(tol=1e-14, damping=DELTA),
    hg.FixedPoint(lr=0.01, max_iter=3000, tol=1e-13, damping=DELTA),
    hg.FixedPoint(lr="auto", max_iter=3000, tol=1e-13, damping=DELTA),
]


@pytest.mark.parametrize("per_feature", [True, False], ids=["per-feature", "scalar"])
@pytest.mark.parametrize("method", DAMPED, ids=lambda m: f"{type(m).__name__}-{getattr(m, 'lr', '')}")
def test_damped_hypergradient_matches_the_damped_ridge_closed_form(method, per_feature):
    prob = PenalisedRidge(per_feature=per_feature)
    damped, undamped = prob.hypergradient(damping=DELTA), prob.hypergradient()
    assert rel_err(damped, undamped) > 0.02  # δ visibly changes the answer
    res = _hypergradient(prob, method)
    assert rel_err(res.grads["lam"], damped) < 1e-8
    assert res.info.converged


@pytest.mark.parametrize("method", [hg.Exact(damping=DELTA), hg.FixedPoint(max_iter=3000, tol=1e-13, damping=DELTA)],
                         ids=lambda m: type(m).__name__)
def test_damping_of_a_root_condition_shifts_its_jacobian(method):
    prob = PenalisedRidge()
    res = _hypergradient(prob, method, inner=_root(prob))
    assert rel_err(res.grads["lam"], prob.hypergradient(damping=DELTA)) < 1e-8


def test_minres_takes_a_negative_damping_that_makes_the_system_indefinite():
    prob = PenalisedRidge()
    eigs = torch.linalg.eigvalsh(prob.matrix())
    delta = -float(eigs[1] + eigs[2]) / 2  # two eigenvalues of H + δI below zero, four above
    assert (torch.linalg.eigvalsh(prob.matrix() + delta * torch.eye(6)) < 0).sum() == 2
    res = _hypergradient(prob, hg.MINRES(tol=1e-14, damping=delta))
    assert res.info.converged
    assert rel_err(res.grads["lam"], prob.hypergradient(damping=delta)) < 1e-8


def test_cg_solver_sees_the_negative_curvature_that_a_negative_shift_creates():
    # hg.CG refuses δ < 0; the solver itself takes any shift and must report H + δI indefinite.
    prob = PenalisedRidge()
    eigs = torch.linalg.eigvalsh(prob.matrix())
    h = prob.matrix()
    _, info = solvers.conjugate_gradient(lambda v: {"w": h @ v["w"]}, {"w": prob.outer_grad(prob.solution())},
                                         tol=1e-14, damping=-float(eigs[1] + eigs[2]) / 2)
    assert info.negative_curvature and not info.converged
    with pytest.raises(hg.HypergradInputError, match="damping"):
        hg.CG(damping=-1.0)


@pytest.mark.parametrize("delta", [0.0, 40.0])
def test_fixed_point_auto_step_is_one_over_the_damped_largest_eigenvalue(delta):
    prob = PenalisedRidge()
    lam_max = float(torch.linalg.eigvalsh(prob.matrix())[-1])
    res = _hypergradient(prob, hg.FixedPoint(lr="auto", max_iter=3000, tol=1e-13, damping=delta))
    # 20 power iterations from a random start: the Rayleigh quotient is within 1% of λ_max here.
    assert res.info.lr == pytest.approx(1.0 / (lam_max + delta), rel=1e-2)
