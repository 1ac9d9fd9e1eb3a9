"""Our CG hypergradient agrees with torchopt's and jaxopt's implicit differentiation.

Problems: ridge regression and binary logistic regression with one L2 weight per feature,
``f(w, h) = loss(train) + ½ Σ_j exp(h_j) w_j²`` and ``F(w) = loss(validation)``, in float64. The inner
solution is computed once (closed form for ridge, Newton for logistic) and handed to all three
libraries, so only the implicit differentiation differs. Each library solves the linear system
``H v = ∂_wF`` by its own conjugate gradient to a residual of 1e-13 relative; with 12 unknowns CG
converges in at most 12 steps, so the three answers must agree to 1e-8 relative.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
import pytest
import torch
import torchopt

import hypergrad as hg

jax.config.update("jax_enable_x64", True)

# torchopt 0.7.3 still calls functorch.vjp, deprecated since torch 2.0: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*functorch.vjp.*:FutureWarning")

N_TRAIN, N_VAL, DIM = 60, 40, 12
TOL = 1e-13
MAX_ITER = 100

Batch = tuple[torch.Tensor, torch.Tensor]


def _data(kind: str) -> tuple[Batch, Batch, torch.Tensor]:
    """(train, validation, log L2 weights) for a linear model with a known true weight vector."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VAL, DIM, generator=gen, dtype=torch.float64)
    w_true = torch.randn(DIM, generator=gen, dtype=torch.float64)
    score = x @ w_true + 0.5 * torch.randn(N_TRAIN + N_VAL, generator=gen, dtype=torch.float64)
    y = score if kind == "ridge" else (score > 0).to(torch.float64)
    log_l2 = torch.linspace(-3.0, 1.0, DIM, dtype=torch.float64)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:]), log_l2


def _torch_data_loss(kind: str, w: torch.Tensor, batch: Batch) -> torch.Tensor:
    x, y = batch
    z = x @ w
    if kind == "ridge":
        return 0.5 * (z - y).square().mean()
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y)


def _jax_data_loss(kind: str, w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    z = x @ w
    if kind == "ridge":
        return 0.5 * jnp.mean((z - y) ** 2)
    return jnp.mean(jax.nn.softplus(z) - y * z)


def _inner_solution(kind: str, train: Batch, log_l2: torch.Tensor) -> torch.Tensor:
    """argmin_w f: the normal equations for ridge, Newton's method (to machine precision) for logistic."""
    x, y = train
    w = torch.zeros(DIM, dtype=torch.float64)
    for _ in range(1 if kind == "ridge" else 30):
        p = torch.sigmoid(x @ w)
        curvature = torch.ones_like(y) if kind == "ridge" else p * (1 - p)
        residual = (x @ w - y) if kind == "ridge" else (p - y)
        hessian = x.T @ (curvature[:, None] * x) / N_TRAIN + torch.diag(log_l2.exp())
        grad = x.T @ residual / N_TRAIN + log_l2.exp() * w
        w = w - torch.linalg.solve(hessian, grad)
    return w


@pytest.fixture(params=["ridge", "logistic"])
def problem(request: pytest.FixtureRequest) -> dict:
    kind = request.param
    train, val, log_l2 = _data(kind)
    return {"kind": kind, "train": train, "val": val, "log_l2": log_l2,
            "w": _inner_solution(kind, train, log_l2)}


def _ours(p: dict) -> np.ndarray:
    kind = p["kind"]

    def inner(params: dict, hparams: dict, batch: Batch) -> torch.Tensor:
        w = params["w"]
        return _torch_data_loss(kind, w, batch) + 0.5 * (hparams["log_l2"].exp() * w.square()).sum()

    def outer(params: dict, hparams: dict, batch: Batch) -> torch.Tensor:
        return _torch_data_loss(kind, params["w"], batch)

    res = hg.hypergradient(outer, inner, {"w": p["w"]}, {"log_l2": p["log_l2"]}, outer_batch=p["val"],
                           inner_batch=p["train"], method=hg.CG(max_iter=MAX_ITER, tol=TOL))
    assert res.info.converged, res.info.message
    return res.grads["log_l2"].numpy()


def _torchopt(p: dict) -> np.ndarray:
    """torchopt 0.7: ``custom_root`` over a "solver" that returns the shared solution, CG backward."""
    kind = p["kind"]

    def stationarity(w: torch.Tensor, log_l2: torch.Tensor) -> torch.Tensor:
        data_grad = torch.func.grad(lambda w_: _torch_data_loss(kind, w_, p["train"]))(w)
        return data_grad + log_l2.exp() * w

    @torchopt.diff.implicit.custom_root(stationarity, argnums=1,
                                        solve=torchopt.linear_solve.solve_cg(maxiter=MAX_ITER, rtol=TOL))
    def solver(w0: torch.Tensor, log_l2: torch.Tensor) -> torch.Tensor:
        return w0.clone()

    log_l2 = p["log_l2"].clone().requires_grad_()
    value = _torch_data_loss(kind, solver(p["w"], log_l2), p["val"])
    (grad,) = torch.autograd.grad(value, log_l2)
    return grad.numpy()


def _jaxopt(p: dict) -> np.ndarray:
    """jaxopt 0.8: ``implicit_diff.custom_root`` with ``linear_solve.solve_cg``; the data are closed over,
    so that jaxopt differentiates with respect to the L2 weights only."""
    kind = p["kind"]
    x, y = (jnp.asarray(t.numpy()) for t in p["train"])
    xv, yv = (jnp.asarray(t.numpy()) for t in p["val"])

    def inner(w: jax.Array, log_l2: jax.Array) -> jax.Array:
        return _jax_data_loss(kind, w, x, y) + 0.5 * jnp.sum(jnp.exp(log_l2) * w ** 2)

    solve = partial(jaxopt.linear_solve.solve_cg, tol=TOL, maxiter=MAX_ITER)

    @jaxopt.implicit_diff.custom_root(jax.grad(inner), solve=solve)
    def solver(w0: jax.Array, log_l2: jax.Array) -> jax.Array:
        return w0

    w_star = jnp.asarray(p["w"].numpy())
    grad = jax.grad(lambda log_l2: _jax_data_loss(kind, solver(w_star, log_l2), xv, yv))(jnp.asarray(p["log_l2"].numpy()))
    return np.asarray(grad)


PEERS: dict[str, Callable[[dict], np.ndarray]] = {"torchopt": _torchopt, "jaxopt": _jaxopt}


def test_inner_solution_is_stationary(problem: dict) -> None:
    """The shared solution is a root of ∂_w f, so the implicit function theorem applies to all three."""
    w = problem["w"].clone().requires_grad_()
    f = _torch_data_loss(problem["kind"], w, problem["train"]) + 0.5 * (problem["log_l2"].exp() * w.square()).sum()
    (grad,) = torch.autograd.grad(f, w)
    assert float(grad.norm()) < 1e-13


@pytest.mark.parametrize("peer", list(PEERS))
def test_cg_hypergradient_matches_peer(problem: dict, peer: str) -> None:
    """Ours and the peer's implicit hypergradient agree to 1e-8 relative on the same solution and data."""
    ours = _ours(problem)
    theirs = PEERS[peer](problem)
    assert np.linalg.norm(ours) > 1e-6  # a non-trivial answer, so the relative comparison means something
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-8 * np.linalg.norm(ours))
