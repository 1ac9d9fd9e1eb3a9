"""The backward pass of a deep equilibrium layer: time and error of each solver, torchdeq's and jaxopt's beside.

Problem (float64): z* = tanh(z* Wᵀ + x Uᵀ + b) on a batch of 32 inputs of size 32, width 128 (4,096
unknowns), ‖W‖₂ = 0.9, readout loss L = ½‖z* c − t‖²; the hyperparameters are W, U, b (20,608). The
fixed point z* is computed once, to machine precision, and shared. Every contender computes dL/dθ
from z* with its linear solve stopped at a relative tolerance of ``TOL``; the error is against autograd
through 600 unrolled forward steps (0.9⁶⁰⁰ ≈ 2e-28, so exact at float64). Contenders:

* ours: ``hg.hypergradient(outer, hg.FixedPointMap(T), ...)`` with FixedPoint (u ← (∂_zT)ᵀu + ∂_zL),
  GMRES(20), BiCGSTAB and NormalCG;
* torchdeq 0.1: ``get_deq(ift=True)``, backward by its ``fixed_point_iter`` and ``anderson`` (``loss.backward()``
  after the forward, timed alone);
* jaxopt 0.8: ``custom_fixed_point`` with ``solve_gmres`` and its default ``solve_normal_cg``, jitted and
  warmed up, ``block_until_ready``.

Run ``python -m benchmarks.bench_roots`` for the interleaved table and ratios (about 30 s on 2 cores),
or ``pytest benchmarks/bench_roots.py --benchmark-only`` with the other suites.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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

jax.config.update("jax_enable_x64", True)

TOL = 1e-10
MAX_ITER = 500
BATCH, WIDTH, INPUTS, CONTRACTION = 32, 128, 32, 0.9


class DEQ(Equilibrium):
    """The benchmark's layer, its shared fixed point and the unrolled reference gradient."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(BATCH, WIDTH, INPUTS, CONTRACTION, seed, scaled_readout=True, steps=600)
        self.reference = flat(self.unrolled_hypergradient(600))


def flat(d: dict) -> torch.Tensor:
    return torch.cat([torch.as_tensor(np.asarray(v)).reshape(-1) for v in d.values()])


OURS: dict[str, hg.Method] = {
    "FixedPoint": hg.FixedPoint(tol=TOL, max_iter=MAX_ITER),
    "GMRES-20": hg.GMRES(tol=TOL, max_iter=MAX_ITER, restart=20),
    "BiCGSTAB": hg.BiCGSTAB(tol=TOL, max_iter=MAX_ITER),
    "NormalCG": hg.NormalCG(tol=TOL, max_iter=MAX_ITER),
}


def ours(p: DEQ, method: hg.Method) -> Callable[[], tuple[torch.Tensor, int]]:
    def run() -> tuple[torch.Tensor, int]:
        res = hg.hypergradient(p.outer, hg.FixedPointMap(p.T), {"z": p.z}, p.theta, inner_batch=p.x, method=method)
        return flat(res.grads), res.info.hvps
    return run


def torchdeq_backward(p: DEQ, solver: str) -> Callable[[], tuple[torch.Tensor, int]]:
    """torchdeq's IFT backward from the shared fixed point (its forward solver starts there and stops at once)."""
    deq = torchdeq.get_deq(ift=True, f_solver="fixed_point_iter", f_max_iter=1, b_solver=solver,
                           b_max_iter=MAX_ITER, b_tol=TOL, b_stop_mode="rel")
    stats: dict = {}

    def run() -> tuple[torch.Tensor, int]:
        theta = {k: v.clone().requires_grad_() for k, v in p.theta.items()}
        z_out, _ = deq(lambda z: p.T({"z": z}, theta, p.x)["z"], p.z.clone())
        loss = p.outer({"z": z_out[-1]}, theta)
        start = time.perf_counter()
        loss.backward()
        stats["seconds"] = time.perf_counter() - start
        return flat({k: v.grad for k, v in theta.items()}), -1

    run.stats = stats  # type: ignore[attr-defined]
    return run


def jaxopt_backward(p: DEQ, solve: Callable) -> Callable[[], tuple[torch.Tensor, int]]:
    x, c, t = (jnp.asarray(v.numpy()) for v in (p.x, p.c, p.t))

    def T(z: jax.Array, th: dict) -> jax.Array:
        return jnp.tanh(z @ th["W"].T + x @ th["U"].T + th["b"])

    @jaxopt.implicit_diff.custom_fixed_point(T, solve=solve)
    def solver(z0: jax.Array, th: dict) -> jax.Array:
        return z0

    grad = jax.jit(jax.grad(lambda th, z: 0.5 * jnp.sum((solver(z, th) @ c - t) ** 2)))
    th = {k: jnp.asarray(v.numpy()) for k, v in p.theta.items()}
    z = jnp.asarray(p.z.numpy())

    def run() -> tuple[torch.Tensor, int]:
        g = jax.block_until_ready(grad(th, z))
        return flat({k: g[k] for k in p.theta}), -1

    run()  # compile
    return run


def contenders(p: DEQ) -> dict[str, Callable[[], tuple[torch.Tensor, int]]]:
    return {
        **{f"ours {name}": ours(p, method) for name, method in OURS.items()},
        "torchdeq fixed_point_iter": torchdeq_backward(p, "fixed_point_iter"),
        "torchdeq anderson": torchdeq_backward(p, "anderson"),
        "jaxopt solve_gmres": jaxopt_backward(p, partial(jaxopt.linear_solve.solve_gmres, tol=TOL, atol=0.0,
                                                         restart=20, maxiter=MAX_ITER)),
        "jaxopt solve_normal_cg": jaxopt_backward(p, partial(jaxopt.linear_solve.solve_normal_cg, tol=TOL,
                                                             maxiter=MAX_ITER)),
    }


def _timed(fn: Callable[[], tuple[torch.Tensor, int]]) -> tuple[float, torch.Tensor, int]:
    start = time.perf_counter()
    grads, products = fn()
    stats = getattr(fn, "stats", None)
    return (stats["seconds"] if stats else time.perf_counter() - start), grads, products


RATIOS = [("ours GMRES-20 / torchdeq fixed_point_iter", "ours GMRES-20", "torchdeq fixed_point_iter"),
          ("ours FixedPoint / torchdeq fixed_point_iter", "ours FixedPoint", "torchdeq fixed_point_iter"),
          ("ours GMRES-20 / torchdeq anderson", "ours GMRES-20", "torchdeq anderson"),
          ("ours GMRES-20 / jaxopt solve_gmres", "ours GMRES-20", "jaxopt solve_gmres"),
          ("ours NormalCG / jaxopt solve_normal_cg", "ours NormalCG", "jaxopt solve_normal_cg"),
          ("ours GMRES-20 / ours FixedPoint", "ours GMRES-20", "ours FixedPoint")]


def interleaved(rounds: int = 5) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Every contender once per round, round after round; the fastest round of each, its error and products."""
    p = DEQ()
    runs = contenders(p)
    times = {name: float("inf") for name in runs}
    errors: dict[str, float] = {}
    products: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            seconds, grads, n = _timed(fn)
            times[name] = min(times[name], seconds)
            errors[name] = float(torch.linalg.vector_norm(grads - p.reference) / torch.linalg.vector_norm(p.reference))
            products[name] = n
    return times, errors, products


@pytest.fixture(scope="module")
def deq() -> DEQ:
    return DEQ()


@pytest.mark.parametrize("name", ["ours " + n for n in OURS] + ["torchdeq fixed_point_iter", "torchdeq anderson",
                                                              "jaxopt solve_gmres", "jaxopt solve_normal_cg"])
def test_deq_backward(benchmark: object, record_time: Callable, deq: DEQ, name: str) -> None:
    """One DEQ backward by ``name``: time, and relative error against the unrolled reference."""
    fn = contenders(deq)[name]
    benchmark.group = "DEQ layer backward"
    grads, _ = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    rel = float(torch.linalg.vector_norm(grads - deq.reference) / torch.linalg.vector_norm(deq.reference))
    benchmark.extra_info.update(rel_error=rel)
    record_time(f"deq/{name}", benchmark)
    assert rel < 1e-6


if __name__ == "__main__":
    torch.set_num_threads(1)
    times, errors, products = interleaved()
    print(f"{'contender':<30} {'fastest s':>10} {'rel. error':>11} {'products':>9}")
    for name in times:
        print(f"{name:<30} {times[name]:>10.4f} {errors[name]:>11.2e} {products[name] if products[name] >= 0 else '':>9}")
    for label, num, den in RATIOS:
        print(f"{label:<45} {times[num] / times[den]:>6.2f}")
