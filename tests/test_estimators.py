"""The approximate estimators against their own exact definitions: Krylov and Neumann solves against
a dense implicit-function-theorem reference on an MLP (derivatives from torch.func), the unrolled
reference converging to the implicit answer, the one-step estimator against autograd through an
explicit step, and the stochastic Neumann estimator's sampling (one fresh batch per term, unbiased
mean, each factor on its documented batch)."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import Ridge, minimise, mlp_inner, mlp_outer, mlp_params, rel_err


def _dense_reference(w: dict, h: dict, train: tuple, val: tuple) -> dict:
    """−(∂²_{λw} f)ᵀ H⁻¹ ∇_wF on the flattened MLP, every derivative from torch.func (F ignores λ)."""
    keys = sorted(w)
    sizes = [w[k].numel() for k in keys]

    def unflat(flat: torch.Tensor) -> dict:
        return {k: part.reshape(w[k].shape) for k, part in zip(keys, flat.split(sizes))}

    flat_w = torch.cat([w[k].reshape(-1) for k in keys])
    flat_h = torch.stack([h[k] for k in keys])

    def f(fw: torch.Tensor, fh: torch.Tensor) -> torch.Tensor:
        return mlp_inner(unflat(fw), dict(zip(keys, fh.unbind())), train)

    hessian = torch.func.hessian(f, argnums=0)(flat_w, flat_h)
    mixed = torch.func.jacfwd(torch.func.grad(f, argnums=0), argnums=1)(flat_w, flat_h)
    g_outer = torch.func.grad(lambda fw: mlp_outer(unflat(fw), h, val))(flat_w)
    return dict(zip(keys, -mixed.T @ torch.linalg.solve(hessian, g_outer)))


@pytest.fixture(scope="module")
def mlp_problem():
    # Explicit dtypes: a module fixture runs before the per-test float64 default is set.
    f64 = torch.float64
    g = torch.Generator().manual_seed(3)
    x, xv = torch.randn(64, 5, generator=g, dtype=f64), torch.randn(64, 5, generator=g, dtype=f64)
    y, yv = torch.randint(0, 3, (64,), generator=g), torch.randint(0, 3, (64,), generator=g)
    p0 = {k: v.to(f64) for k, v in mlp_params((5, 8, 3)).items()}
    h = {k: torch.tensor(-2.0, dtype=f64) for k in p0}
    w = minimise(lambda p: mlp_inner(p, h, (x, y)), p0)
    return w, h, (x, y), (xv, yv), _dense_reference(w, h, (x, y), (xv, yv))


def _stack(d):
    return torch.stack([d[k] for k in sorted(d)])


@pytest.mark.parametrize("method", [hg.Exact(), hg.CG(tol=1e-13, max_iter=500), hg.MINRES(tol=1e-13, max_iter=500),
                                    hg.Neumann(terms=300, lr="auto"), hg.FixedPoint(max_iter=2000, tol=1e-10)],
                         ids=lambda m: type(m).__name__)
def test_mlp_solvers_match_the_dense_torch_func_reference(mlp_problem, method):
    w, h, train, val, reference = mlp_problem
    assert all(v.dtype == torch.float64 for v in (*w.values(), *h.values()))
    res = hg.hypergradient(mlp_outer, mlp_inner, w, h, outer_batch=val, inner_batch=train, method=method)
    tol = 1e-6 if isinstance(method, (hg.Exact, hg.CG, hg.MINRES)) else 1e-5
    assert rel_err(_stack(res.grads), _stack(reference)) < tol
    assert res.info.converged in (True, None)
    assert not res.info.diverged


def test_unrolled_reverse_mode_converges_to_the_implicit_hypergradient_as_steps_grow():
    prob = Ridge()
    ref = prob.hypergradient()
    errors = []
    for steps in (10, 100, 1000):
        res = hg.hypergradient(prob.outer, prob.inner, {"w": torch.zeros(6)}, {"lam": prob.lam}, outer_batch=prob.val,
                               inner_batch=prob.train, method=hg.Unrolled(steps=steps, lr=0.005))
        errors.append(rel_err(res.grads["lam"], ref))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8


def test_unrolled_with_momentum_matches_autograd_through_the_same_loop():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    w, m = torch.zeros(6, requires_grad=True), torch.zeros(6)
    for _ in range(7):
        g = torch.autograd.grad(prob.inner({"w": w}, {"lam": lam}, prob.train), w, create_graph=True)[0]
        m = 0.9 * m + g
        w = w - 0.002 * m
    ref = torch.autograd.grad(prob.outer({"w": w}, {}, prob.val), lam)[0]
    res = hg.hypergradient(prob.outer, prob.inner, {"w": torch.zeros(6)}, {"lam": prob.lam}, outer_batch=prob.val,
                           inner_batch=prob.train, method=hg.Unrolled(steps=7, lr=0.002, momentum=0.9))
    assert rel_err(res.grads["lam"], ref) < 1e-12


def _one_step_reference(w, h, train, val, xi):
    hh = {k: v.clone().requires_grad_() for k, v in h.items()}
    ww = {k: v.clone().requires_grad_() for k, v in w.items()}
    g = torch.autograd.grad(mlp_inner(ww, hh, train), list(ww.values()), create_graph=True)
    stepped = {k: ww[k] - xi * gk for k, gk in zip(ww, g)}
    grads = torch.autograd.grad(mlp_outer(stepped, hh, val), list(hh.values()))
    return dict(zip(hh, grads))


@pytest.mark.parametrize("fd,tol", [(False, 1e-10), (True, 1e-4)], ids=["exact", "finite-difference"])
def test_one_step_matches_autograd_through_one_explicit_inner_step(fd, tol):
    w = mlp_params((5, 8, 3), seed=2)
    h = {k: torch.tensor(-1.0) for k in w}
    g = torch.Generator().manual_seed(5)
    train = (torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g))
    val = (torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g))
    ref = _one_step_reference(w, h, train, val, xi=0.1)
    res = hg.hypergradient(mlp_outer, mlp_inner, w, h, outer_batch=val, inner_batch=train,
                           method=hg.OneStep(lr=0.1, finite_difference=fd))
    assert rel_err(_stack(res.grads), _stack(ref)) < tol


def test_first_order_is_the_direct_gradient_only():
    prob = Ridge()
    res = hg.hypergradient(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam},
                           outer_batch=prob.val, inner_batch=prob.train, method=hg.FirstOrder())
    assert torch.equal(res.grads["lam"], torch.zeros(6))  # F does not depend on λ directly


class _Batches:
    """Fixed mini-batches of a regression set; ``draw`` picks one at random and counts calls."""

    def __init__(self, prob: Ridge, size: int) -> None:
        self.parts = list(zip(prob.X.split(size), prob.y.split(size)))
        self.gen = torch.Generator().manual_seed(11)
        self.calls = 0

    def draw(self):
        self.calls += 1
        return self.parts[int(torch.randint(len(self.parts), (1,), generator=self.gen))]


def _scaled_inner(n_batches: int):
    """f_b = N·½‖X_b(λ ⊙ w) − y_b‖² + ½‖w‖²: λ scales the features, so both the Hessian and the mixed
    term ∂²_{λw} f_b depend on the batch; the mean over the N equal batches is the full loss (N = 1)."""
    def inner(p, h, b):
        x, y = b
        return n_batches * 0.5 * ((x @ (h["lam"] * p["w"]) - y) ** 2).sum() + 0.5 * (p["w"] ** 2).sum()

    return inner


def test_stochastic_neumann_with_a_full_batch_sampler_equals_neumann():
    prob = Ridge()
    args = (prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam})
    a = hg.hypergradient(*args, outer_batch=prob.val, inner_batch=lambda: prob.train,
                         method=hg.StochasticNeumann(terms=5, lr=0.01))
    b = hg.hypergradient(*args, outer_batch=prob.val, inner_batch=prob.train, method=hg.Neumann(terms=5, lr=0.01))
    assert torch.allclose(a.grads["lam"], b.grads["lam"], rtol=1e-14, atol=0)


def test_stochastic_neumann_draws_one_fresh_batch_per_term_and_is_unbiased():
    prob = Ridge(n=40)
    batches = _Batches(prob, size=10)
    inner = _scaled_inner(4)
    point = ({"w": prob.solution()}, {"lam": prob.lam})
    args = (prob.outer, inner, *point)
    method = hg.StochasticNeumann(terms=3, lr=0.004)
    full = hg.hypergradient(prob.outer, _scaled_inner(1), *point, outer_batch=prob.val, inner_batch=prob.train,
                            method=hg.Neumann(terms=3, lr=0.004))
    draws = 2000
    samples = []
    for _ in range(draws):
        samples.append(hg.hypergradient(*args, outer_batch=prob.val, inner_batch=batches.draw, method=method).grads["lam"])
    assert batches.calls == draws * (method.terms + 1)
    samples = torch.stack(samples)
    mean, sem = samples.mean(0), samples.std(0) / draws**0.5
    assert (samples.std(0) > 1e-3 * full.grads["lam"].abs()).all()  # the estimates really vary
    assert ((mean - full.grads["lam"]).abs() <= 4 * sem).all()


@pytest.mark.parametrize("share", [False, True])
def test_stochastic_neumann_puts_each_factor_on_the_batch_it_documents(share: bool):
    # Dense reference: H_b and the mixed Jacobian M_b = ∂²_{λw} f_b of each batch, the series by hand.
    prob = Ridge(n=40)
    inner = _scaled_inner(4)
    parts = list(zip(prob.X.split(10), prob.y.split(10)))
    order = iter([parts[2], parts[0], parts[3], parts[1]])
    w, lam = prob.solution(), prob.lam
    terms, gamma = 3, 0.004
    res = hg.hypergradient(prob.outer, inner, {"w": w}, {"lam": lam}, outer_batch=prob.val,
                           inner_batch=lambda: next(order),
                           method=hg.StochasticNeumann(terms=terms, lr=gamma, share_batch=share))
    drawn = [parts[2], parts[0], parts[3], parts[1]]
    mixed_batch, hessian_batches = (drawn[terms - 1], drawn[:terms]) if share else (drawn[0], drawn[1:terms + 1])

    def hessian(b):
        return torch.autograd.functional.hessian(lambda w_: inner({"w": w_}, {"lam": lam}, b), w)

    def mixed(b):  # ∂/∂λ of ∂_w f: shape (w, λ)
        return torch.autograd.functional.jacobian(
            lambda lam_: torch.func.grad(lambda w_: inner({"w": w_}, {"lam": lam_}, b))(w), lam)

    wv = w.detach().requires_grad_(True)
    lv = lam.detach().requires_grad_(True)
    dw, dlam = torch.autograd.grad(prob.outer({"w": wv}, {"lam": lv}, prob.val), (wv, lv), allow_unused=True)
    dlam = torch.zeros_like(lam) if dlam is None else dlam
    p, v = dw.clone(), dw.clone()
    for b in hessian_batches:
        p = p - gamma * hessian(b) @ p
        v = v + p
    expected = dlam - mixed(mixed_batch).T @ (gamma * v)
    assert torch.allclose(res.grads["lam"], expected, rtol=1e-10, atol=1e-12)
    assert res.info.inner_batches == (terms if share else terms + 1) and res.info.hvps == terms


def test_stochastic_neumann_share_batch_needs_a_numeric_lr():
    with pytest.raises(hg.HypergradInputError, match="share_batch=True needs a numeric lr"):
        hg.StochasticNeumann(lr="auto", share_batch=True)
