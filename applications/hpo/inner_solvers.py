"""Inner-problem solvers: they fit the model weights for fixed hyperparameters.

Both take the objective as ``objective(params, batch) -> scalar`` and continue from the ``params``
they are given, which is how the outer loop warm-starts each solve from the previous outer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Params = dict[str, Tensor]
Objective = Callable[[Mapping[str, Tensor], Any], Tensor]


@dataclass(frozen=True)
class InnerInfo:
    """What an inner solve did.

    Attributes:
        iterations: Optimizer iterations taken.
        grad_norm: Euclidean norm of the objective's gradient at the returned weights (on the last
            batch for stochastic solvers).
        loss: Objective value at the returned weights (last batch for stochastic solvers).
    """

    iterations: int
    grad_norm: float
    loss: float


def _leaves(params: Mapping[str, Tensor]) -> Params:
    return {name: value.detach().clone().requires_grad_(True) for name, value in params.items()}


def _grad_norm(leaves: Params) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in leaves.values() if p.grad is not None))


@dataclass(frozen=True)
class LBFGSSolver:
    """Full-batch L-BFGS (strong-Wolfe line search) to a gradient tolerance.

    Meant for strongly convex inner problems, where the minimiser is unique and the implicit
    function theorem holds at the returned point only to the extent the gradient is small.

    Attributes:
        tol: Stop once the largest absolute gradient entry is at most ``tol`` (default ``1e-8``).
        max_iter: Iteration cap (default ``1000``).
        history_size: Number of curvature pairs L-BFGS keeps (default ``100``; ill-conditioned
            problems such as noisy-label reweighting need many pairs to converge in few iterations).
    """

    tol: float = 1e-8
    max_iter: int = 1000
    history_size: int = 100

    def __call__(
        self, objective: Objective, params: Mapping[str, Tensor], batches: Callable[[], Any]
    ) -> tuple[Params, InnerInfo]:
        """Minimise ``objective(·, batches())`` starting from ``params``.

        Returns:
            The minimiser (detached tensors) and an :class:`InnerInfo`.
        """
        batch = batches()
        leaves = _leaves(params)
        optimizer = torch.optim.LBFGS(
            list(leaves.values()),
            lr=1.0,
            max_iter=self.max_iter,
            max_eval=2 * self.max_iter,
            tolerance_grad=self.tol,
            # Stopping on a small loss change would end before the gradient tolerance is met.
            tolerance_change=0.0,
            history_size=self.history_size,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = objective(leaves, batch)
            loss.backward()
            return loss

        optimizer.step(closure)
        loss = closure()
        state = optimizer.state[next(iter(leaves.values()))]
        info = InnerInfo(int(state.get("n_iter", 0)), _grad_norm(leaves), float(loss.detach()))
        return {k: v.detach() for k, v in leaves.items()}, info


@dataclass(frozen=True)
class SGDSolver:
    """A fixed number of mini-batch SGD steps with momentum.

    The momentum buffer starts from zero at every call: each call is one stretch of training between
    two hyperparameter steps.

    Attributes:
        steps: Number of SGD steps per call.
        lr: Learning rate.
        momentum: Heavy-ball momentum (default ``0.9``).
    """

    steps: int
    lr: float
    momentum: float = 0.9

    def __call__(
        self, objective: Objective, params: Mapping[str, Tensor], batches: Callable[[], Any]
    ) -> tuple[Params, InnerInfo]:
        """Run :attr:`steps` SGD steps on fresh batches starting from ``params``.

        Returns:
            The trained weights (detached tensors) and an :class:`InnerInfo` of the last step.
        """
        leaves = _leaves(params)
        optimizer = torch.optim.SGD(list(leaves.values()), lr=self.lr, momentum=self.momentum)
        loss = torch.zeros(())
        for _ in range(self.steps):
            optimizer.zero_grad()
            loss = objective(leaves, batches())
            loss.backward()
            optimizer.step()
        return {k: v.detach() for k, v in leaves.items()}, InnerInfo(
            self.steps, _grad_norm(leaves), float(loss.detach())
        )
