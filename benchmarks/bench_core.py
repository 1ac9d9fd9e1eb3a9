"""Time and accuracy of one hypergradient per estimator, HVP modes against a gradient, peers side by side.

Problems (``_problems.py``, float64): softmax regression on MNIST-5k with one L2 weight per weight
(7,850 parameters, 7,840 hyperparameters) and a 784–128–10 tanh MLP with one weight decay per weight
(101,770 of each). The CG-50 side-by-side runs softmax regression in two layouts of ``W``: (784, 10),
logits ``x @ W``, and ``nn.Linear``'s (10, 784), logits ``F.linear(x, W)``, because on CPU the skinny
products of the two layouts run at very different speeds. Iterative estimators all get
``ITERATIONS`` HVPs with early stopping off (tol=0), so their times compare at equal work. Accuracy
(``extra_info["rel_error"]``) is against a CG solve to a residual of 1e-12 relative. Run with
``make bench`` (``pytest benchmarks --benchmark-only``); the ratio table at the end comes from
``conftest.py``. ``python -m benchmarks.bench_core`` runs the side-by-side comparison and the four
layout products interleaved round by round instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import hypergrad as hg
from benchmarks._problems import (
    Bilevel,
    from_jax,
    jaxopt_cg,
    linear_layout,
    matmul_floor,
    relative_error,
    torchopt_cg,
)
from hypergrad import tree
from hypergrad.linearization import HVP_MODES, Linearization

ITERATIONS = 50
ROUNDS = 3

# name -> method, given the problem's largest Hessian eigenvalue L (step 1/L for the Neumann-type
# methods, fixed so that none of them spends extra HVPs on a power iteration).
ESTIMATORS: dict[str, Callable[[float], object]] = {
    "FirstOrder": lambda L: hg.FirstOrder(),
    "OneStep-fd": lambda L: hg.OneStep(lr=1 / L),
    "OneStep-exact": lambda L: hg.OneStep(lr=1 / L, finite_difference=False),
    f"Neumann-{ITERATIONS}": lambda L: hg.Neumann(terms=ITERATIONS, lr=1 / L),
    f"StochasticNeumann-{ITERATIONS}": lambda L: hg.StochasticNeumann(terms=ITERATIONS, lr=1 / L),
    f"FixedPoint-{ITERATIONS}": lambda L: hg.FixedPoint(lr=1 / L, max_iter=ITERATIONS, tol=0.0),
    f"CG-{ITERATIONS}": lambda L: hg.CG(max_iter=ITERATIONS, tol=0.0),
    f"MINRES-{ITERATIONS}": lambda L: hg.MINRES(max_iter=ITERATIONS, tol=0.0),
    f"Unrolled-{ITERATIONS}": lambda L: hg.Unrolled(steps=ITERATIONS, lr=1 / L),
}

# Mini-batch of the stochastic estimator: a quarter of the MLP's training set.
MINIBATCH = 64


def _time(benchmark: object, fn: Callable[[], object]) -> object:
    return benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_estimator(benchmark: object, record_time: Callable, problem: Bilevel, reference: Callable,
                   estimator: str) -> None:
    """One hypergradient by ``estimator``: time, and relative error against the tight-CG reference."""
    method = ESTIMATORS[estimator](problem.curvature)
    inner_batch = problem.minibatches(MINIBATCH) if estimator.startswith("Stochastic") else None
    benchmark.group = f"{problem.name}: one hypergradient"
    res = _time(benchmark, lambda: problem.hypergradient(method, inner_batch))
    benchmark.extra_info.update(rel_error=relative_error(res.grads, reference(problem)), hvps=res.info.hvps,
                                iterations=res.info.iterations, inner_grad_norm=problem.grad_norm)
    record_time(f"{problem.name}/{estimator}", benchmark)


@pytest.mark.parametrize("mode", ["gradient", *HVP_MODES, "reverse+graph"])
def test_hvp(benchmark: object, record_time: Callable, problem: Bilevel, mode: str) -> None:
    """One inner gradient, and one HVP in each mode. ``reverse`` reuses a built graph of ∂_w f (as the
    iterative solvers do); ``reverse+graph`` builds it first (gradient with create_graph + product)."""
    v = {k: torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
         for k, x in problem.params.items()}

    def gradient() -> dict[str, torch.Tensor]:
        w = tree.detach(problem.params, True)
        loss = problem.inner_loss(w, problem.hparams, problem.train)
        return dict(zip(w, torch.autograd.grad(loss, list(w.values()))))

    def linearize(hvp_mode: str) -> Linearization:
        return Linearization(problem.inner_loss, problem.params, problem.hparams, problem.train, mode=hvp_mode)

    if mode == "gradient":
        fn = gradient
    elif mode == "reverse+graph":
        def fn() -> dict[str, torch.Tensor]:
            return linearize("reverse").hvp(v)
    else:
        lin = linearize(mode)  # forward and finite-difference products do not reuse anything built here

        def fn() -> dict[str, torch.Tensor]:
            return lin.hvp(v)

    benchmark.group = f"{problem.name}: gradient vs HVP"
    out = _time(benchmark, fn)
    if mode != "gradient":
        benchmark.extra_info["rel_error"] = relative_error(out, linearize("reverse").hvp(v))
    record_time(f"{problem.name}/{'gradient' if mode == 'gradient' else 'hvp-' + mode}", benchmark)


CONTENDERS = ("ours", "torchopt", "jaxopt", "matmul-floor")
LAYOUTS = ("softmax", "softmax-linear")  # W (784, 10) and x @ W; W (10, 784) and F.linear(x, W)


def contender(problem: Bilevel, who: str) -> Callable[[], object]:
    """One 50-iteration CG hypergradient of ``problem`` by ``who`` (jaxopt: jitted, blocked until ready;
    compiled on its first call), or the plain-torch matmul floor of that length."""
    if who == "ours":
        method = hg.CG(max_iter=ITERATIONS, tol=0.0)
        return lambda: problem.hypergradient(method).grads
    if who == "torchopt":
        return torchopt_cg(problem, ITERATIONS)
    if who == "jaxopt":
        run = jaxopt_cg(problem, ITERATIONS)
        return lambda: from_jax(run())
    return matmul_floor(problem, ITERATIONS)


@pytest.fixture(scope="session")
def linear_problem(softmax_problem: Bilevel) -> Bilevel:
    """Softmax regression in ``nn.Linear``'s layout: the solved (784, 10) problem, transposed."""
    return linear_layout(softmax_problem)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("who", CONTENDERS)
def test_cg_side_by_side(benchmark: object, record_time: Callable, softmax_problem: Bilevel,
                         linear_problem: Bilevel, reference: Callable, layout: str, who: str) -> None:
    """The same 50-iteration CG hypergradient of softmax regression by us, torchopt and jaxopt, and the
    plain-torch matmul floor, in both layouts of ``W``. The (10, 784) layout's error is measured
    against the transposed (784, 10) reference: the same problem, reparametrised."""
    problem = softmax_problem if layout == "softmax" else linear_problem
    name = {"ours": "CG", "torchopt": "torchopt-CG", "jaxopt": "jaxopt-CG", "matmul-floor": "matmul-floor"}[who]
    benchmark.group = f"{layout}: CG-{ITERATIONS} hypergradient side by side"
    # Ours is timed again here (besides test_estimator), so the ratios compare runs made minutes apart at most.
    out = _time(benchmark, contender(problem, who))
    if who != "matmul-floor":
        ref = reference(softmax_problem)
        if layout == "softmax-linear":
            ref = {"W": ref["W"].T}
        benchmark.extra_info["rel_error"] = relative_error(out, ref)
    record_time(f"{layout}/{name}-{ITERATIONS}", benchmark)


def layout_products(x: torch.Tensor, classes: int = 10) -> dict[str, Callable[[], torch.Tensor]]:
    """The forward and backward products of a ``classes``-output linear layer on ``x`` in both layouts:
    ``x @ W`` (W (d, c)) against ``F.linear(x, W_t)`` (W_t (c, d)), and ``xᵀ G`` against ``Gᵀ x``."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape[1], classes, dtype=x.dtype, generator=gen)
    w_t = w.T.contiguous()
    g = torch.randn(x.shape[0], classes, dtype=x.dtype, generator=gen)
    return {
        "x @ W": lambda: x @ w,
        "F.linear(x, W_t)": lambda: F.linear(x, w_t),
        "x.T @ G": lambda: x.T @ g,
        "G.T @ x": lambda: g.T @ x,
    }


def interleaved(rounds: int = 7, repeats: int = 20) -> dict[str, float]:
    """The CG-50 comparison in both layouts, and the four layout products, interleaved round by round.

    pytest-benchmark runs one benchmark's rounds back to back, so a burst of load from another job
    lands on one contender only; interleaving spreads it over all. Returns the fastest round of each
    (the products: the fastest round's mean over ``repeats`` calls).
    """
    from benchmarks._problems import softmax_regression

    problems = {"softmax": softmax_regression()}
    problems["softmax-linear"] = linear_layout(problems["softmax"])
    runs: dict[str, Callable[[], object]] = {
        f"{layout}/{who}": contender(problems[layout], who) for layout in LAYOUTS for who in CONTENDERS
    }
    products = layout_products(problems["softmax"].train[0])
    best = {name: float("inf") for name in [*runs, *products]}
    for _ in range(rounds + 1):  # the first round compiles jax and warms the caches; it still counts if fastest
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
        for name, fn in products.items():
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / repeats)
    return best


if __name__ == "__main__":
    times = interleaved()
    print(f"{'contender':<16}" + "".join(f"{layout:>16}" for layout in LAYOUTS) + "   (fastest s; linear / matmul)")
    for who in CONTENDERS:
        pair = [times[f"{layout}/{who}"] for layout in LAYOUTS]
        print(f"{who:<16}" + "".join(f"{t:>16.4f}" for t in pair) + f"   {pair[1] / pair[0]:.2f}")
    for peer, target in (("torchopt", 0.9), ("jaxopt", 0.8), ("matmul-floor", 1.2)):
        ratios = [times[f"{layout}/ours"] / times[f"{layout}/{peer}"] for layout in LAYOUTS]
        print(f"ours / {peer:<13}" + "".join(f"{r:>16.2f}" for r in ratios) + f"   (target <= {target})")
    for name in ("x @ W", "F.linear(x, W_t)", "x.T @ G", "G.T @ x"):
        print(f"{name:<18} {times[name] * 1e3:8.3f} ms")
