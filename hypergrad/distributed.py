"""Data-parallel hypergradients: the reduction the estimators apply across processes.

With the batches split over P processes, each process evaluates every loss on its own shard. Every
quantity a hypergradient is built from is a gradient or a product of the mean loss over the batch, and
so the mean over processes of the shard quantities, *provided the vectors multiplied are the same on
every process*. An estimator given ``reduce`` therefore averages, in this order:

* the outer gradients ∂_wF and ∂_λF (and F), before anything uses them;
* ∂_w f (the one-step estimator's virtual step);
* every Hessian-vector product (so every solver iterate, every residual and every step size is the
  same on every process, and a solver stops at the same iteration everywhere);
* the mixed product (∂²_{λw} f)ᵀ v, once v is the same everywhere.

The result is the hypergradient of the global batch on every process, for every estimator but
``Unrolled`` (whose inner steps would need a differentiable reduction). The cost is one ``all_reduce``
of a flat buffer per product, not one per tensor. :func:`all_reduce_mean` is that reduction for
``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist

from hypergrad import tree
from hypergrad.errors import HypergradInputError
from hypergrad.user_code import call

Reduce = Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]]
"""``reduce(tensors) -> tensors``: the mean over processes of a dict (same keys and shapes on each)."""


def all_reduce_mean(grads: Mapping[str, torch.Tensor], group: dist.ProcessGroup | None = None) -> dict[str, torch.Tensor]:
    """The mean of ``grads`` over the ranks of ``group``; a copy of ``grads`` when not distributed.

    Pass it as ``reduce=`` to :func:`~hypergrad.hypergradient`, :func:`~hypergrad.backward` or
    :func:`~hypergrad.implicit` (``functools.partial(all_reduce_mean, group=g)`` for a subgroup).

    Args:
        grads: a dict of tensors, the same keys, shapes and dtype on every rank.
        group: a process group (default: the world).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return {k: v.clone() for k, v in grads.items()}
    flat = tree.flatten(grads).clone()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat /= dist.get_world_size(group)
    # torch.cat promotes mixed dtypes; each tensor goes back to its own.
    return {k: v.to(dtype=grads[k].dtype, copy=True) for k, v in tree.unflatten(flat, grads).items()}


def check_reduce(reduce: object) -> None:
    """One-line :class:`HypergradInputError` unless ``reduce`` is ``None`` or a callable."""
    if reduce is not None and not callable(reduce):
        raise HypergradInputError(f"reduce is a {type(reduce).__name__}; expected None or a callable "
                                  "dict -> dict (e.g. hypergrad.distributed.all_reduce_mean)")


def reduce_parts(reduce: Reduce | None, step: str, *parts: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``parts`` averaged over processes by one call of ``reduce`` (unchanged when ``reduce`` is None).

    Args:
        reduce: the user's reduction, or ``None``.
        step: what is being reduced, for the note an exception inside ``reduce`` gains.
        *parts: dicts of tensors; their keys may overlap (each part is reduced separately by name).
    """
    if reduce is None:
        return list(parts)
    merged = {f"{i}/{k}": v for i, part in enumerate(parts) for k, v in part.items()}
    out = call(reduce, "reduce(tensors)", step, merged)
    if not isinstance(out, Mapping) or set(out) != set(merged):
        raise HypergradInputError(f"reduce returned {type(out).__name__} for {step}; expected a dict with the "
                                  "keys and shapes of its argument")
    tree.check_like(merged, {k: out[k] for k in merged}, "reduce output")
    return [{k: out[f"{i}/{k}"] for k in part} for i, part in enumerate(parts)]


def reduced(product: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], reduce: Reduce | None,
            step: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``product`` followed by ``reduce`` (``product`` itself when ``reduce`` is None)."""
    if reduce is None:
        return product
    return lambda u: reduce_parts(reduce, step, product(u))[0]
