"""Inner-problem solvers: they fit the model weights for fixed hyperparameters.

Both take the objective as ``objective(params, batch) -> scalar`` and continue from the ``params``
they are given, which is how the outer loop warm-starts each solve from the previous outer step. Both
ask ``should_stop()`` (the run's budget) before every evaluation of the objective, so that a solve that
runs long (L-BFGS line searches on a diverged objective) ends when the budget does; the returned
:class:`InnerInfo` then says ``stopped``.
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
ShouldStop = Callable[[], bool]


class _Stopped(Exception):
    """Raised inside L-BFGS's closure to leave ``optimizer.step`` when ``should_stop()`` says so."""


@dataclass(frozen=True)
class InnerInfo:
    """What an inner solve did.

    Attributes:
        iterations: Optimizer iterations taken.
        grad_norm: Euclidean norm of the objective's gradient at the returned weights (on the last
            batch for stochastic solvers).
        loss: Objective value at the returned weights (last batch for stochastic solvers).
        stopped: ``should_stop()`` ended the solve early (the weights are where it stopped).
    """

    iterations: int
    grad_norm: float
    loss: float
    stopped: bool = False


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
        self, objective: Objective, params: Mapping[str, Tensor], batches: Callable[[], Any],
        should_stop: ShouldStop | None = None,
    ) -> tuple[Params, InnerInfo]:
        """Minimise ``objective(·, batches())`` starting from ``params``.

        Args:
            objective: ``objective(params, batch) -> scalar``.
            params: Where to start.
            batches: Returns the (full) batch.
            should_stop: Asked before every evaluation of the objective; True ends the solve there.

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

        def evaluate() -> Tensor:
            optimizer.zero_grad()
            loss = objective(leaves, batch)
            loss.backward()
            return loss

        def closure() -> Tensor:
            if should_stop is not None and should_stop():
                raise _Stopped
            return evaluate()

        stopped = False
        try:
            optimizer.step(closure)
        except _Stopped:
            stopped = True
        loss = evaluate()
        state = optimizer.state[next(iter(leaves.values()))]
        info = InnerInfo(int(state.get("n_iter", 0)), _grad_norm(leaves), float(loss.detach()), stopped)
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
        self, objective: Objective, params: Mapping[str, Tensor], batches: Callable[[], Any],
        should_stop: ShouldStop | None = None,
    ) -> tuple[Params, InnerInfo]:
        """Run :attr:`steps` SGD steps on fresh batches starting from ``params``.

        Args:
            objective: ``objective(params, batch) -> scalar``.
            params: Where to start.
            batches: Returns a fresh mini-batch at each call.
            should_stop: Asked before every step; True ends the solve there.

        Returns:
            The trained weights (detached tensors) and an :class:`InnerInfo` of the last step.
        """
        leaves = _leaves(params)
        optimizer = torch.optim.SGD(list(leaves.values()), lr=self.lr, momentum=self.momentum)
        loss = torch.zeros(())
        done = 0
        for _ in range(self.steps):
            if should_stop is not None and should_stop():
                break
            optimizer.zero_grad()
            loss = objective(leaves, batches())
            loss.backward()
            optimizer.step()
            done += 1
        return {k: v.detach() for k, v in leaves.items()}, InnerInfo(
            done, _grad_norm(leaves), float(loss.detach()), done < self.steps
        )
