"""Root and fixed-point differentiation against JAXopt (``custom_fixed_point``, ``custom_root``) and torchdeq.

Each problem's inner solution is computed once (``tests/condition_problems.py``) and handed to every
library, so only the implicit differentiation differs. The linear systems are solved by each library's
GMRES (torchdeq: its fixed-point iteration, the DEQ practice) to a residual of 1e-13 relative on a few
dozen unknowns, so the answers must agree to 1e-8 relative.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
import pytest
import torch
import torchdeq

import hypergrad as hg
from benchmarks._deq import Equilibrium
from tests.condition_problems import Lasso, NonNegativeRidge

jax.config.update("jax_enable_x64", True)

TOL = 1e-13
JAX_GMRES = partial(jaxopt.linear_solve.solve_gmres, tol=TOL, atol=0.0, restart=50, maxiter=500)
OURS = hg.GMRES(tol=TOL, max_iter=500, restart=50)


def _j(t: torch.Tensor) -> jax.Array:
    return jnp.asarray(t.numpy())


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_lasso_fixed_point_matches_jaxopt_custom_fixed_point():
    prob = Lasso()
    ours = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"w": prob.w}, {"lam": prob.lam},
                            outer_batch=prob.val, inner_batch=prob.train, method=OURS).grads["lam"].numpy()
    X, y, Xv, yv = map(_j, (prob.X, prob.y, prob.Xv, prob.yv))

    def T(w: jax.Array, lam: jax.Array) -> jax.Array:
        z = w - prob.eta * X.T @ (X @ w - y) / len(y)
        return jaxopt.prox.prox_lasso(z, lam, scaling=prob.eta)

    @jaxopt.implicit_diff.custom_fixed_point(T, solve=JAX_GMRES)
    def solver(w0: jax.Array, lam: jax.Array) -> jax.Array:
        return w0

    theirs = jax.grad(lambda lam: 0.5 * jnp.sum((Xv @ solver(_j(prob.w), lam) - yv) ** 2))(_j(prob.lam))
    assert np.linalg.norm(ours) > 1e-3
    assert _rel(ours, np.asarray(theirs)) < 1e-8


def test_non_negative_ridge_root_matches_jaxopt_custom_root():
    prob = NonNegativeRidge()
    ours = hg.hypergradient(prob.outer, hg.Root(prob.F), {"w": prob.w}, {"lam": prob.lam},
                            outer_batch=prob.val, inner_batch=prob.train, method=OURS).grads["lam"].numpy()
    X, y, Xv, yv = map(_j, (prob.X, prob.y, prob.Xv, prob.yv))

    def F(w: jax.Array, lam: jax.Array) -> jax.Array:
        grad = X.T @ (X @ w - y) / len(y) + lam * w
        return w - jnp.maximum(w - prob.eta * grad, 0.0)

    @jaxopt.implicit_diff.custom_root(F, solve=JAX_GMRES)
    def solver(w0: jax.Array, lam: jax.Array) -> jax.Array:
        return w0

    theirs = jax.grad(lambda lam: 0.5 * jnp.sum((Xv @ solver(_j(prob.w), lam) - yv) ** 2))(_j(prob.lam))
    assert np.linalg.norm(ours) > 1e-3
    assert _rel(ours, np.asarray(theirs)) < 1e-8


def _ours_deq(prob: Equilibrium) -> np.ndarray:
    res = hg.hypergradient(prob.outer, hg.FixedPointMap(prob.T), {"z": prob.z}, prob.theta, inner_batch=prob.x,
                           method=OURS)
    assert res.info.converged, res.info.message
    return np.concatenate([g.reshape(-1).numpy() for g in res.grads.values()])


def test_equilibrium_layer_matches_jaxopt_custom_fixed_point():
    prob = Equilibrium()
    x, c, t = _j(prob.x), _j(prob.c), _j(prob.t)

    def T(z: jax.Array, theta: dict) -> jax.Array:
        return jnp.tanh(z @ theta["W"].T + x @ theta["U"].T + theta["b"])

    @jaxopt.implicit_diff.custom_fixed_point(T, solve=JAX_GMRES)
    def solver(z0: jax.Array, theta: dict) -> jax.Array:
        return z0

    grads = jax.grad(lambda th: 0.5 * jnp.sum((solver(_j(prob.z), th) @ c - t) ** 2))(
        {k: _j(v) for k, v in prob.theta.items()})
    theirs = np.concatenate([np.asarray(grads[k]).reshape(-1) for k in prob.theta])
    assert _rel(_ours_deq(prob), theirs) < 1e-8


def test_equilibrium_layer_matches_torchdeq_implicit_backward():
    """torchdeq 0.1: ``get_deq(ift=True)`` solves the forward and the backward fixed point by its
    fixed-point iteration (tolerances at float64 round-off), and differentiates through one more step."""
    prob = Equilibrium()
    theta = {k: v.clone().requires_grad_() for k, v in prob.theta.items()}
    deq = torchdeq.get_deq(ift=True, f_solver="fixed_point_iter", f_max_iter=400, f_tol=1e-15,
                           b_solver="fixed_point_iter", b_max_iter=400, b_tol=1e-15)

    def func(z: torch.Tensor) -> torch.Tensor:
        return prob.T({"z": z}, theta, prob.x)["z"]

    z_out, _ = deq(func, torch.zeros_like(prob.z))
    assert float((z_out[-1].detach() - prob.z).abs().max()) < 1e-14  # torchdeq found the same fixed point
    prob.outer({"z": z_out[-1]}, theta).backward()
    theirs = np.concatenate([theta[k].grad.reshape(-1).numpy() for k in theta])
    assert _rel(_ours_deq(prob), theirs) < 1e-8


@pytest.mark.parametrize("b_solver", ["anderson", "broyden"])
def test_equilibrium_layer_matches_torchdeq_quasi_newton_backward(b_solver):
    prob = Equilibrium()
    theta = {k: v.clone().requires_grad_() for k, v in prob.theta.items()}
    deq = torchdeq.get_deq(ift=True, f_solver="fixed_point_iter", f_max_iter=400, f_tol=1e-15,
                           b_solver=b_solver, b_max_iter=100, b_tol=1e-14)
    z_out, _ = deq(lambda z: prob.T({"z": z}, theta, prob.x)["z"], torch.zeros_like(prob.z))
    prob.outer({"z": z_out[-1]}, theta).backward()
    theirs = np.concatenate([theta[k].grad.reshape(-1).numpy() for k in theta])
    assert _rel(_ours_deq(prob), theirs) < 1e-8
