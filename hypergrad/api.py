"""The public entry points: :func:`hypergradient` and :func:`backward`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch

from hypergrad import methods as m
from hypergrad import tree
from hypergrad.conditions import Condition, check_condition_method, default_method
from hypergrad.distributed import Reduce, check_reduce
from hypergrad.errors import HypergradInputError, NonFiniteError
from hypergrad.estimators import Estimate, Problem, ShouldStop, estimate
from hypergrad.linearization import Loss
from hypergrad.solvers import SolveInfo
from hypergrad.user_code import call, estimator_context


@dataclass(frozen=True)
class Hypergradient:
    """The answer of :func:`hypergradient`.

    Attributes:
        grads: dF/dλ, a dict with the keys and shapes of ``hparams``.
        direct: ∂_λF, the explicit part of ``grads`` (``grads − direct`` is the implicit correction).
        outer_value: F at the point where the estimator evaluated it (0-d tensor).
        info: the solve's diagnostics (:class:`~hypergrad.solvers.SolveInfo`).
        adjoint: the solution v of the linear system (a dict like ``params``; u of a condition's
            system), detached; None for the estimators that solve none (FirstOrder, OneStep, Unrolled).
            Hand it to the next call's ``warm_start=``.
    """

    grads: dict[str, torch.Tensor]
    direct: dict[str, torch.Tensor]
    outer_value: torch.Tensor
    info: SolveInfo
    adjoint: dict[str, torch.Tensor] | None = None


def batch_sampler(inner_batch: Any) -> Callable[[], Any]:
    """``inner_batch`` as a zero-argument callable: the user's sampler (its exceptions noted), or one returning it."""
    if not callable(inner_batch):
        return lambda: inner_batch
    return lambda: call(inner_batch, "inner_batch() (the batch sampler)", "a fresh inner batch")


def validate(losses: dict[str, object], params: object, hparams: object, method: object,
             allowed: tuple[type, ...] = m.METHODS, caller: str = "", should_stop: object = None) -> None:
    """One-line :class:`HypergradInputError` for a non-callable loss, a bad dict, a method not in ``allowed``,
    or a ``should_stop`` that is neither None nor callable."""
    if should_stop is not None and not callable(should_stop):
        raise HypergradInputError(f"should_stop={should_stop!r}: expected None or a callable () -> bool")
    for name, fn in losses.items():
        if not callable(fn):
            raise HypergradInputError(f"{name} is a {type(fn).__name__}; expected a callable (params, hparams, batch) -> scalar")
    tree.check_tensor_dict(params, "params")
    tree.check_tensor_dict(hparams, "hparams")
    if not isinstance(method, allowed):
        names = ", ".join(c.__name__ + "()" for c in allowed)
        where = f"{caller}(method={method!r})" if caller else f"method={method!r}"
        raise HypergradInputError(f"{where} is not a method it accepts; expected one of {names}")


def _raise_on_nonfinite(method: object, est: Estimate) -> None:
    names = [name for name, _ in est.checks] + [f"hypergradient[{k!r}]" for k in est.grads]
    flags = [flag for _, flag in est.checks] + [torch.isfinite(g).all() for g in est.grads.values()]
    ok = torch.stack(flags).tolist()  # one host read for all the checks
    for name, good in zip(names, ok):
        if not good:
            raise NonFiniteError(type(method).__name__, name)


def hypergradient(outer_loss: Loss, inner_loss: Loss | Condition, params: Mapping[str, torch.Tensor],
                  hparams: Mapping[str, torch.Tensor], *, outer_batch: Any = None, inner_batch: Any = None,
                  method: m.Method | None = None, reduce: Reduce | None = None,
                  warm_start: Mapping[str, torch.Tensor] | None = None,
                  should_stop: ShouldStop | None = None) -> Hypergradient:
    """The hypergradient dF/dλ of ``F(w*(λ), λ)`` where ``w*(λ) = argmin_w f(w, λ)``.

    ``params`` is the inner solution (or the current weights, for the one-step and unrolled
    estimators, which start from it); neither dict is modified.

    Args:
        outer_loss: ``F(params, hparams, batch) -> scalar`` (e.g. validation loss).
        inner_loss: ``f(params, hparams, batch) -> scalar`` (e.g. training loss), or an optimality
            condition that ``params`` satisfies: ``hg.Root(F)`` (F(params, hparams, batch) = 0, a dict
            like params) or ``hg.FixedPointMap(T)`` (params = T(params, hparams, batch)).
        params: inner variables w, name -> tensor.
        hparams: outer variables λ, name -> tensor (0-d tensors allowed).
        outer_batch: handed to ``outer_loss``.
        inner_batch: handed to ``inner_loss``; a zero-argument callable is called for a fresh batch
            (once per Hessian term by :class:`~hypergrad.StochasticNeumann`, once per step by
            :class:`~hypergrad.Unrolled`, once by the others).
        method: the estimator; default ``CG()`` for a loss, ``GMRES()`` for a condition (which accepts
            ``FirstOrder``, ``Exact``, ``FixedPoint``, ``GMRES``, ``BiCGSTAB``, ``NormalCG``).
        reduce: data-parallel training (default None: one process). With each process holding its
            shard of ``outer_batch`` and of every inner batch, ``reduce(dict) -> dict`` returns the mean
            over processes (``hypergrad.distributed.all_reduce_mean``); it is applied to ∂_wF, ∂_λF,
            ∂_w f, every Hessian-vector product and the mixed product, so every process gets the
            hypergradient of the global batch (:mod:`hypergrad.distributed`). Not with ``Unrolled``.
        warm_start: a starting guess for the linear solve, a dict like ``params``: typically the
            previous outer step's ``res.adjoint``. The iterative methods (CG, MINRES, FixedPoint, GMRES,
            BiCGSTAB, NormalCG) start from it rescaled by the scalar that minimises its residual, which
            is never worse than starting from zero (a useless guess is dropped); the tolerance stays
            relative to ∂_wF. Exact and the Neumann series have no starting point and ignore it.
            Costs one product.
        should_stop: a zero-argument callable asked before the estimate starts, before every product
            of its linear solve (Hessian-vector or Jacobian products, power-iteration steps) and before
            every unrolled step; when it returns True the computation ends with :class:`Interrupted`.
            This is how a wall-clock budget holds inside a long solve, e.g.
            ``should_stop=lambda: time.monotonic() > deadline``. Under ``reduce`` it must answer the
            same on every process (a stop on one would leave the others waiting in an all-reduce).

    Returns:
        :class:`Hypergradient` with ``grads``, ``info`` and ``adjoint``.

    Raises:
        HypergradInputError: bad arguments (mismatched dicts, a non-scalar loss, an unknown method).
        NonFiniteError: a NaN or Inf appeared; the message names the estimator and the quantity.
        Interrupted: ``should_stop()`` returned True; nothing is returned.

    Example:
        >>> res = hypergradient(val_loss, train_loss, w, {"log_l2": log_l2},
        ...                     outer_batch=(Xv, yv), inner_batch=(Xt, yt), method=CG(max_iter=50))
        >>> res.grads["log_l2"], res.info.converged
        >>> res = hypergradient(..., warm_start=res.adjoint)   # the next outer step, started from the last v
    """
    method = default_method(inner_loss) if method is None else method
    validate({"outer_loss": outer_loss, "inner_loss": inner_loss}, params, hparams, method, should_stop=should_stop)
    if isinstance(inner_loss, Condition):
        check_condition_method(method, "hypergradient")
    check_reduce(reduce)
    if warm_start is not None:
        tree.check_tensor_dict(warm_start, "warm_start")
        tree.check_like(params, warm_start, "warm_start")
    if reduce is not None and isinstance(method, m.Unrolled):
        raise HypergradInputError("Unrolled() does not take reduce=: its inner steps would need a differentiable "
                                  "all-reduce; use an implicit method (CG, Neumann, ...) for data-parallel hypergradients")
    start = time.perf_counter()
    # A condition travels in the same field; estimate() routes it to the root solvers before any loss use.
    problem = Problem(outer_loss, cast(Loss, inner_loss), dict(params), dict(hparams), outer_batch, batch_sampler(inner_batch),
                      reduce, None if warm_start is None else {k: warm_start[k].detach().to(params[k]) for k in params},
                      should_stop)
    with estimator_context(f"hypergradient(method={type(method).__name__})"):
        est = estimate(method, problem)
    _raise_on_nonfinite(method, est)
    grads = {k: est.grads[k].to(hparams[k].dtype).reshape(hparams[k].shape) for k in hparams}
    info = est.info.replace(seconds=time.perf_counter() - start)
    return Hypergradient(grads=grads, direct=est.direct, outer_value=est.value, info=info, adjoint=est.adjoint)


def backward(outer_loss: Loss, inner_loss: Loss | Condition, params: Mapping[str, torch.Tensor],
             hparams: Mapping[str, torch.Tensor], *, outer_batch: Any = None, inner_batch: Any = None,
             method: m.Method | None = None, reduce: Reduce | None = None,
             warm_start: Mapping[str, torch.Tensor] | None = None,
             should_stop: ShouldStop | None = None) -> Hypergradient:
    """Like :func:`hypergradient`, then add ``grads`` into each ``hparams`` tensor's ``.grad``.

    Any ``torch.optim`` optimizer over the hyperparameters can then take the step. Nothing is written
    when the estimate fails (bad input, a non-finite value or a stop by ``should_stop`` raise before any
    ``.grad`` changes).

    Example:
        >>> opt = torch.optim.Adam(alphas.values(), lr=3e-4)
        >>> opt.zero_grad(); backward(val_loss, train_loss, w, alphas, outer_batch=vb,
        ...                           inner_batch=sample_train, method=StochasticNeumann(terms=2, lr=0.025))
        >>> opt.step()
    """
    if isinstance(hparams, Mapping):
        for k, h in hparams.items():
            if isinstance(h, torch.Tensor) and not h.is_leaf:
                raise HypergradInputError(f"hparams[{k!r}] is not a leaf tensor; backward() accumulates into .grad of leaves")
    res = hypergradient(outer_loss, inner_loss, params, hparams, outer_batch=outer_batch,
                        inner_batch=inner_batch, method=method, reduce=reduce, warm_start=warm_start,
                        should_stop=should_stop)
    with torch.no_grad():
        for k, h in hparams.items():
            if h.grad is None:
                h.grad = res.grads[k].detach().clone()
            else:
                h.grad.add_(res.grads[k])
    return res
