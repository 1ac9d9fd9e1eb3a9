"""Data-parallel reduction of hypergradients.

With the inner and outer batches sharded over ranks, each rank computes the hypergradient on its
shard; the mean over ranks is the hypergradient of the mean objective when every product in it is
linear in the batch (first-order, and each Hessian/mixed product with the same v), and an average of
per-shard estimates otherwise. One ``all_reduce`` on a flat buffer, not one per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from hypergrad import tree


def all_reduce_mean(grads: Mapping[str, torch.Tensor], group: dist.ProcessGroup | None = None) -> dict[str, torch.Tensor]:
    """The mean of ``grads`` over the ranks of ``group``; a copy of ``grads`` when not distributed.

    Args:
        grads: a dict of tensors, the same keys and shapes on every rank.
        group: a process group (default: the world).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return {k: v.clone() for k, v in grads.items()}
    flat = tree.flatten(grads).clone()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat /= dist.get_world_size(group)
    return {k: v.clone() for k, v in tree.unflatten(flat, grads).items()}
