"""The ijcnn1 bilevel problem: per-feature L2 of a logistic regression, selected on held-out data.

    inner  g(x, z) = (1/n) Σ_i log(1 + exp(−y_i a_iᵀz)) + ½ Σ_j exp(x_j) z_j²    (49,990 training samples)
    outer  f(z)    = (1/m) Σ_i log(1 + exp(−y_i a_iᵀz))                          (91,701 test samples)
    h(x) = f(z*(x)),  x ∈ [−12, 12]^22,  z*(x) = argmin_z g(x, z)

as in benchopt's ``benchmark_bilevel`` (the SOBA/SABA paper's figure 2), with its start: from
``np.random.RandomState(2442)``, z0 = randn(22) then x0 = log(rand(22)). g is strongly convex in z
(its Hessian is at least diag(exp(x)) ⪰ e^−12 I), so Newton's method finds z* to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

BOX = (-12.0, 12.0)
SEED = 2442
FILES = ("ijcnn1.trn", "ijcnn1.tst")


class DataError(ValueError):
    """The data folder lacks a file, or a file is not LIBSVM text of the expected shape."""


@dataclass(frozen=True)
class Problem:
    """Design matrices with the labels folded in (row i is y_i a_i), float64, so margins are ``A @ z``."""

    train: Tensor
    test: Tensor

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def _read(folder: Path, name: str, n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_svmlight_file  # only this loader needs scikit-learn

    expected = "expected a LIBSVM file: one sample per line, 'label index:value ...'"
    for candidate in (folder / name, folder / f"{name}.bz2"):
        if candidate.exists() and not candidate.is_file():
            raise DataError(f"{candidate} is not a file ({expected})")
        if candidate.is_file():
            try:
                X, y = load_svmlight_file(str(candidate), n_features=n_features)
            except (ValueError, OSError, EOFError) as err:
                raise DataError(f"{candidate}: not a LIBSVM file ({str(err).splitlines()[0]}); {expected}") from None
            if X.shape[0] == 0:
                raise DataError(f"{candidate}: no samples; {expected}")
            if not (np.isfinite(X.data).all() and np.isfinite(y).all()):
                raise DataError(f"{candidate}: non-finite values; {expected} with finite numbers")
            return X.toarray(), y
    raise DataError(f"{folder}: neither {name} nor {name}.bz2 is there (LIBSVM ijcnn1; see docs/hpo.md)")


def load(folder: str | Path) -> Problem:
    """ijcnn1 from ``folder`` holding ``ijcnn1.trn`` and ``ijcnn1.tst`` (or their ``.bz2``), LIBSVM format."""
    folder = Path(folder)
    X, y = _read(folder, FILES[0], None)
    Xt, yt = _read(folder, FILES[1], X.shape[1])
    for name, labels in ((FILES[0], y), (FILES[1], yt)):
        if not set(np.unique(labels)) <= {-1.0, 1.0}:
            raise DataError(f"{folder / name}: labels {sorted(set(np.unique(labels)))[:5]}; expected -1 and 1")
    return Problem(torch.from_numpy(y[:, None] * X), torch.from_numpy(yt[:, None] * Xt))


def synthetic(n_train: int = 1000, n_test: int = 1500, dim: int = 22, seed: int = 0) -> Problem:
    """A small problem of the same form (22 features over two decades of scale, labels from a noisy
    logistic model, so not separable) for tests and CI."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=gen, dtype=torch.float64) * 0.5
    scales = torch.logspace(-1.5, 0.5, dim, dtype=torch.float64)

    def draw(n: int) -> Tensor:
        a = torch.randn(n, dim, generator=gen, dtype=torch.float64) * scales
        y = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(a @ w), 1.0, -1.0)
        return y[:, None] * a

    return Problem(draw(n_train), draw(n_test))


def start(dim: int = 22, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark's starting point ``(x0, z0)``: z0 = randn(dim), then x0 = log(rand(dim))."""
    rng = np.random.RandomState(seed)
    z0 = rng.randn(dim)
    x0 = np.log(rng.rand(dim))
    return x0, z0


def logistic(margins: Tensor) -> Tensor:
    """mean log(1 + exp(−m)), stable for any sign of m."""
    return torch.nn.functional.softplus(-margins).mean()


def inner_loss(params: dict[str, Tensor], hparams: dict[str, Tensor], batch: Tensor) -> Tensor:
    """g(x, z) on the training design ``batch``: the library's ``inner_loss``."""
    z = params["z"]
    return logistic(batch @ z) + 0.5 * (hparams["x"].exp() * z * z).sum()


def outer_loss(params: dict[str, Tensor], hparams: dict[str, Tensor], batch: Tensor) -> Tensor:
    """f(z) on the test design ``batch``: the library's ``outer_loss``."""
    return logistic(batch @ params["z"])


def hessian_diagonal(params: dict[str, Tensor], hparams: dict[str, Tensor], batch: Tensor) -> dict[str, Tensor]:
    """diag ∂²_zz g = (1/n) Σ_i s_i(1 − s_i) a_ij² + exp(x_j): the exact diagonal for ``hg.Jacobi``."""
    s = torch.sigmoid(batch @ params["z"])
    return {"z": (s * (1 - s)) @ batch.square() / batch.shape[0] + hparams["x"].exp()}


@dataclass(frozen=True)
class NewtonInfo:
    """Iterations taken, the final ‖∇_z g‖, and the Cholesky factor of the last Hessian formed (None if
    z was already within tolerance): the inner Hessian near z*, free for the outer solve to reuse."""

    iterations: int
    grad_norm: float
    factor: Tensor | None = None


def newton(design: Tensor, x: Tensor, z: Tensor, tol: float = 1e-12, max_iter: int = 100) -> tuple[Tensor, NewtonInfo]:
    """z*(x) by Newton's method from ``z`` with a backtracking (Armijo) line search, to ‖∇_z g‖ ≤ tol.

    Each iteration forms the d×d Hessian Aᵀ diag(s(1−s)) A / n + diag(exp x) and solves it by
    Cholesky: O(n d²), a few milliseconds for ijcnn1. From the previous outer step's z* it takes
    two or three iterations; the quadratic convergence gives the round-off-level z* the evaluator needs.
    """
    n = design.shape[0]
    lam = x.exp()

    def value_grad(z_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = design @ z_
        value = torch.nn.functional.softplus(-m).mean() + 0.5 * (lam * z_ * z_).sum()
        s = torch.sigmoid(m)
        return value, lam * z_ - design.T @ (1 - s) / n, s

    value, grad, s = value_grad(z)
    norm = float(torch.linalg.vector_norm(grad))
    factor = None
    for it in range(max_iter):
        if norm <= tol:
            return z, NewtonInfo(it, norm, factor)
        hess = (design * (s * (1 - s))[:, None]).T @ design / n + torch.diag(lam)
        factor = torch.linalg.cholesky(hess)
        step = torch.cholesky_solve(grad[:, None], factor)[:, 0]
        slope = float(grad @ step)
        t = 1.0
        while True:  # Armijo, or a halved gradient where the decrease of g is below its round-off
            cand = z - t * step
            cand_value, cand_grad, cand_s = value_grad(cand)
            if (cand_value <= value - 1e-4 * t * slope or t < 1e-10
                    or float(torch.linalg.vector_norm(cand_grad)) <= 0.5 * norm):
                break
            t *= 0.5
        z, value, grad, s = cand, cand_value, cand_grad, cand_s
        norm = float(torch.linalg.vector_norm(grad))
    return z, NewtonInfo(max_iter, norm, factor)


def value(problem: Problem, x: np.ndarray | Tensor, z: Tensor | None = None, tol: float = 1e-12) -> float:
    """The exact evaluator h(x) = f(z*(x)), the inner problem solved by Newton to ‖∇_z g‖ ≤ ``tol``."""
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    z_start = torch.zeros(problem.dim, dtype=torch.float64) if z is None else z
    z_star, info = newton(problem.train, x_t, z_start, tol=tol)
    if not info.grad_norm <= tol:
        raise ArithmeticError(f"Newton stopped at ‖∇_z g‖ = {info.grad_norm:.3g} > {tol:g} at x = {x_t.tolist()}")
    return float(logistic(problem.test @ z_star))


def suboptimality_floor(h_star: float) -> float:
    """Below this h − h* is round-off of the evaluator (float64 mean over ~1e5 samples)."""
    return 64 * math.ulp(h_star)
