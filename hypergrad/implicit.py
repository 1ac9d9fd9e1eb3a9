"""``implicit``: the inner solution as a differentiable function of the hyperparameters.

The returned tensors equal ``params``; their autograd node back-propagates a cotangent ``u`` (the
gradient of whatever outer computation used them) through the implicit function theorem:
``(H + δI) v = u``, then ``ū_λ = −(∂²_{λw} f)ᵀ v``. The node is an :class:`torch.autograd.Function`
with ``setup_context`` and a generated vmap rule, so ``torch.func.grad``, ``vmap`` and ``jacrev``
can transform an outer computation that uses it (``tests/test_implicit.py`` shows which).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from hypergrad import methods as m
from hypergrad import tree
from hypergrad.api import batch_sampler, validate
from hypergrad.conditions import Condition, check_condition_method, default_method
from hypergrad.distributed import Reduce, check_reduce, reduce_parts
from hypergrad.errors import NonFiniteError
from hypergrad.estimators import implicit_solve
from hypergrad.linearization import Loss
from hypergrad.solvers import SolveInfo
from hypergrad.solvers.info import under_transform
from hypergrad.user_code import estimator_context


@dataclass
class _Spec:
    inner_loss: Loss | Condition
    method: m.ImplicitMethod
    w_keys: list[str]
    h_keys: list[str]
    draw: Callable[[], Any]
    on_solve: Callable[[SolveInfo], None] | None = None
    reduce: Reduce | None = None
    should_stop: Callable[[], bool] | None = None
    infos: list[SolveInfo] = field(default_factory=list)


class _ImplicitSolution(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(spec: _Spec, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.clone() for t in tensors[: len(spec.w_keys)])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        spec, *tensors = inputs
        ctx.spec = spec
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx: Any, *grad_w: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        spec: _Spec = ctx.spec
        saved = ctx.saved_tensors
        n = len(spec.w_keys)
        w = dict(zip(spec.w_keys, saved[:n]))
        lam = dict(zip(spec.h_keys, saved[n:]))
        rhs = {k: torch.zeros_like(w[k]) if g is None else g for k, g in zip(spec.w_keys, grad_w)}
        (rhs,) = reduce_parts(spec.reduce, "the cotangent ∂_wF", rhs)
        method = spec.method
        transformed = under_transform(rhs)
        if transformed:
            # torch.func cannot see through torch.autograd.grad; its own jvp-of-grad can. The solvers
            # then skip host reads and run their full iteration count (converged steps are frozen).
            method = dataclasses.replace(method, hvp="forward")
        # Set here, not in implicit(): autograd may run this backward in another thread.
        with estimator_context(f"the backward pass of implicit(method={type(method).__name__})"):
            v, mixed, info = implicit_solve(method, spec.inner_loss, w, lam, rhs, spec.draw, spec.reduce,
                                            should_stop=spec.should_stop)
        if not transformed:
            for name, d in (("linear-system solution v", v), ("mixed product", mixed)):
                if not bool(tree.all_finite(d)):
                    raise NonFiniteError(type(method).__name__, f"{name} in implicit()")
            spec.infos.append(info)
            if spec.on_solve is not None:
                spec.on_solve(info)
        return (None, *([None] * n), *(-mixed[k] for k in spec.h_keys))


def implicit(inner_loss: Loss | Condition, params: Mapping[str, torch.Tensor], hparams: Mapping[str, torch.Tensor],
             inner_batch: Any = None, method: m.ImplicitMethod | None = None,
             on_solve: Callable[[SolveInfo], None] | None = None, reduce: Reduce | None = None,
             should_stop: Callable[[], bool] | None = None) -> dict[str, torch.Tensor]:
    """``params`` (an inner solution) attached to the autograd graph of ``hparams`` by the IFT.

    Any outer computation on the returned dict followed by ``.backward()`` (or ``torch.autograd.grad``,
    or a ``torch.func`` transform) yields dF/dλ, with ∂_λF flowing through ``hparams`` directly.

    Args:
        inner_loss: ``f(params, hparams, batch) -> scalar``; ``params`` should be (close to) its minimiser.
            Or an optimality condition ``params`` satisfies: ``hg.Root(F)`` or ``hg.FixedPointMap(T)``.
        params: the inner solution, name -> tensor.
        hparams: the hyperparameters; gradients reach them through the returned tensors.
        inner_batch: a batch, or a zero-argument callable returning one.
        method: an implicit method (``Exact``, ``CG``, ``MINRES``, ``Neumann``, ``StochasticNeumann``,
            ``FixedPoint``, ``GMRES``, ``BiCGSTAB``, ``NormalCG``); default ``CG()`` for a loss, ``GMRES()`` for
            a condition.
        on_solve: called with the :class:`SolveInfo` of each backward solve.
        reduce: data-parallel (default None): the mean over processes, applied to the incoming cotangent
            ∂_wF, every Hessian-vector product and the mixed product, so the implicit part of the
            gradient is that of the global batch. The direct part ∂_λF reaches ``hparams`` outside
            this node: average ``hparams``' ``.grad`` over processes as for any parameter.
        should_stop: asked before every product of the backward solve; True raises
            :class:`~hypergrad.Interrupted` out of ``.backward()`` (see :func:`~hypergrad.hypergradient`).

    Returns:
        A dict equal to ``params`` whose tensors back-propagate into ``hparams``.

    Example:
        >>> w = implicit(train_loss, w_star, {"log_l2": log_l2}, (Xt, yt), method=CG(max_iter=50))
        >>> val_loss(w, {"log_l2": log_l2}, (Xv, yv)).backward()   # log_l2.grad = dF/dλ
    """
    method = default_method(inner_loss) if method is None else method
    validate({"inner_loss": inner_loss}, params, hparams, method, m.IMPLICIT_METHODS, caller="implicit",
             should_stop=should_stop)
    if isinstance(inner_loss, Condition):
        check_condition_method(method, "implicit")
    check_reduce(reduce)
    spec = _Spec(inner_loss, method, list(params), list(hparams), batch_sampler(inner_batch), on_solve, reduce,
                 should_stop)
    out = _ImplicitSolution.apply(spec, *params.values(), *hparams.values())
    return dict(zip(spec.w_keys, out))
