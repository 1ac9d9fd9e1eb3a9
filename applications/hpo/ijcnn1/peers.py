"""The same outer loops with a peer library computing the hypergradient: jaxopt and torchopt.

Each peer's oracle has the interface of :class:`~applications.hpo.ijcnn1.outer.Oracle`,
``x -> (h(x), ∇h(x))`` as numpy, so :func:`~applications.hpo.ijcnn1.outer.run` drives all of them
with the same L-BFGS-B, Adam or SGD loop and the same clock.

* jaxopt: as benchopt's ``jaxopt_GD`` solver sets it up: the inner problem by ``jaxopt.LBFGS``
  (100 iterations at most, its default tolerance, started from the previous z*) with implicit
  differentiation and its default linear solve (CG on the normal equations), the value and gradient
  jit-compiled (compiled in the untimed warm-up call, as benchopt does).
* torchopt: ``torchopt.diff.implicit.custom_root`` around the same warm-started Newton solver our
  oracle uses, with its default linear solve (CG on the normal equations), so only the
  hypergradient machinery differs from ours.

The peers are optional dependencies (``setup.cfg`` extra ``peers``); a missing one raises
:class:`ImportError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from applications.hpo.ijcnn1.problem import Problem, logistic, newton


@dataclass
class JaxoptOracle:
    """``x -> (h, ∇h)`` by ``jax.value_and_grad`` through ``jaxopt.LBFGS(implicit_diff=True).run``."""

    problem: Problem
    maxiter: int = 100
    calls: int = 0

    def __post_init__(self) -> None:
        import jax
        import jax.numpy as jnp
        import jaxopt

        jax.config.update("jax_enable_x64", True)
        train = jnp.asarray(self.problem.train.numpy())
        test = jnp.asarray(self.problem.test.numpy())

        def inner(z, x):  # noqa: ANN001, ANN202  (jax functions, traced)
            return jnp.mean(jnp.logaddexp(0.0, -(train @ z))) + 0.5 * jnp.sum(jnp.exp(x) * z * z)

        solver = jaxopt.LBFGS(fun=inner, maxiter=self.maxiter, implicit_diff=True)

        def value(z_init, x):  # noqa: ANN001, ANN202
            z = solver.run(z_init, x).params
            return jnp.mean(jnp.logaddexp(0.0, -(test @ z))), z

        self._value_grad = jax.jit(jax.value_and_grad(value, argnums=1, has_aux=True))
        self._z = jnp.zeros(self.problem.dim)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        (h, z), grad = self._value_grad(self._z, np.asarray(x, dtype=np.float64))
        self._z = z
        self.calls += 1
        return float(h), np.asarray(grad, dtype=np.float64)

    def reset(self) -> None:
        import jax.numpy as jnp

        self._z, self.calls = jnp.zeros(self.problem.dim), 0


@dataclass
class TorchoptOracle:
    """``x -> (h, ∇h)`` by backward through ``torchopt.diff.implicit.custom_root`` around Newton."""

    problem: Problem
    inner_tol: float = 1e-10
    calls: int = 0

    def __post_init__(self) -> None:
        import torchopt

        train = self.problem.train
        n = train.shape[0]

        def optimality(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return x.exp() * z - train.T @ torch.sigmoid(-(train @ z)) / n

        @torchopt.diff.implicit.custom_root(optimality, argnums=1)
        def solve(z_init: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            z, _ = newton(train, x.detach(), z_init.detach(), tol=self.inner_tol)
            return z

        self._solve = solve
        self._z = torch.zeros(self.problem.dim, dtype=torch.float64)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x_t = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        z = self._solve(self._z, x_t)
        h = logistic(self.problem.test @ z)
        (grad,) = torch.autograd.grad(h, x_t)
        self._z = z.detach()
        self.calls += 1
        return float(h.detach()), grad.numpy()

    def reset(self) -> None:
        self._z, self.calls = torch.zeros(self.problem.dim, dtype=torch.float64), 0
