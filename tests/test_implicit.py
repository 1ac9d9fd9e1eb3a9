"""``implicit``: an outer computation through the inner solution, with autograd and torch.func."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import Ridge, rel_err


def _jacobian(prob: Ridge) -> torch.Tensor:
    """dw*/dλ for per-feature ridge: −A⁻¹ diag(w*)."""
    return -torch.linalg.solve(prob.matrix(), torch.diag(prob.solution()))


@pytest.mark.parametrize("method", [hg.CG(tol=1e-14), hg.MINRES(tol=1e-14), hg.Exact(),
                                    hg.Neumann(terms=3000, lr="auto")], ids=lambda m: type(m).__name__)
def test_backward_through_implicit_gives_the_closed_form_hypergradient(method):
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    infos = []
    w = hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=method, on_solve=infos.append)
    assert torch.equal(w["w"], prob.solution())
    prob.outer(w, {"lam": lam}, prob.val).backward()
    assert rel_err(lam.grad, prob.hypergradient()) < 1e-8
    assert len(infos) == 1 and infos[0].method == type(method).__name__


def test_direct_dependence_on_the_hyperparameters_flows_alongside():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    w = hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=hg.CG(tol=1e-14))
    (prob.outer(w, {}, prob.val) + (lam**2).sum()).backward()
    assert rel_err(lam.grad, prob.hypergradient() + 2 * prob.lam) < 1e-8


def test_torch_func_grad_through_implicit():
    prob = Ridge()

    def outer_of(lam):
        w = hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=hg.CG(tol=1e-14))
        return prob.outer(w, {}, prob.val)

    assert rel_err(torch.func.grad(outer_of)(prob.lam), prob.hypergradient()) < 1e-8


@pytest.mark.parametrize("method", [hg.CG(tol=1e-14, max_iter=30), hg.MINRES(tol=1e-14, max_iter=30), hg.Exact()],
                         ids=lambda m: type(m).__name__)
def test_torch_func_jacrev_through_implicit_gives_the_solution_jacobian(method):
    prob = Ridge()

    def solution_of(lam):
        return hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=method)["w"]

    jac = torch.func.jacrev(solution_of)(prob.lam)
    assert rel_err(jac, _jacobian(prob)) < 1e-8


def test_torch_func_vmap_over_cotangents_of_implicit():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    w = hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=hg.CG(tol=1e-14))["w"]
    basis = torch.eye(6)
    rows = torch.autograd.grad(w, lam, basis, is_grads_batched=True)[0]  # vmap over the backward
    assert rel_err(rows, _jacobian(prob)) < 1e-8


def test_implicit_rejects_estimators_that_solve_nothing():
    prob = Ridge()
    with pytest.raises(hg.HypergradInputError, match="implicit\\(method=FirstOrder"):
        hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": prob.lam}, prob.train, method=hg.FirstOrder())


def test_torch_func_vmap_of_grad_gives_one_hypergradient_per_hyperparameter_setting():
    prob = Ridge()

    def outer_of(lam):
        # The inner solution is computed per setting inside the transform, then attached by implicit().
        w = torch.linalg.solve(prob.matrix(lam), prob.X.T @ prob.y).detach()
        ws = hg.implicit(prob.inner, {"w": w}, {"lam": lam}, prob.train, method=hg.CG(tol=1e-14, max_iter=30))
        return prob.outer(ws, {}, prob.val)

    settings = torch.stack([prob.lam, 2 * prob.lam, 0.5 * prob.lam])
    grads = torch.func.vmap(torch.func.grad(outer_of))(settings)
    for lam, g in zip(settings, grads):
        ref = Ridge()
        ref.lam = lam
        assert rel_err(g, ref.hypergradient()) < 1e-8
