"""Arithmetic on parameter dicts (``name -> Tensor``), the vectors every solver works with.

All functions keep the key order of their first argument and use the fused ``torch._foreach_*``
kernels, which launch one kernel per dict instead of one per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hypergrad.errors import HypergradInputError

Tree = dict[str, torch.Tensor]


def check_like(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`HypergradInputError` unless ``b`` has the keys and shapes of ``a``."""
    if list(a.keys()) != list(b.keys()):
        missing = sorted(set(a) - set(b))
        extra = sorted(set(b) - set(a))
        raise HypergradInputError(
            f"{what}: keys differ (missing {missing}, unexpected {extra}); expected the keys {list(a)}"
            if missing or extra
            else f"{what}: keys are in another order {list(b)}; expected {list(a)}"
        )
    for k in a:
        if a[k].shape != b[k].shape:
            raise HypergradInputError(
                f"{what}[{k!r}] has shape {tuple(b[k].shape)}; expected {tuple(a[k].shape)}"
            )


def check_tensor_dict(d: object, what: str) -> None:
    """Raise :class:`HypergradInputError` unless ``d`` is a non-empty dict of floating tensors."""
    if not isinstance(d, Mapping) or not d:
        raise HypergradInputError(f"{what} must be a non-empty dict of tensors, got {type(d).__name__}")
    for k, v in d.items():
        if not isinstance(v, torch.Tensor):
            raise HypergradInputError(f"{what}[{k!r}] is a {type(v).__name__}; expected a torch.Tensor")
        if not v.is_floating_point():
            raise HypergradInputError(f"{what}[{k!r}] has dtype {v.dtype}; expected a floating dtype")


def detach(a: Mapping[str, torch.Tensor], requires_grad: bool = False) -> Tree:
    """Fresh leaves sharing storage with ``a``."""
    if requires_grad:
        return {k: v.detach().requires_grad_() for k, v in a.items()}
    return {k: v.detach() for k, v in a.items()}


def zeros_like(a: Mapping[str, torch.Tensor]) -> Tree:
    return {k: torch.zeros_like(v) for k, v in a.items()}


def _vals(a: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    return list(a.values())


def _wrap(keys: Mapping[str, torch.Tensor], values: Sequence[torch.Tensor]) -> Tree:
    return dict(zip(keys.keys(), values))


def under_transform(*trees: Mapping[str, torch.Tensor]) -> bool:
    """Inside a ``torch.func`` transform, or holding its wrapped tensors (as a vmapped backward does):
    values cannot be read on the host there, and the fused kernels have no batching rule."""
    if torch._C._functorch.maybe_current_level() is not None:
        return True
    return any(_wrapped(next(iter(t.values()))) for t in trees if t)


def _wrapped(t: torch.Tensor) -> bool:
    # ``autograd.grad(..., is_grads_batched=True)`` batches with the older vmap, which sets no level.
    return torch._C._functorch.is_functorch_wrapped_tensor(t) or torch._C._functorch.is_legacy_batchedtensor(t)


def add(a: Tree, b: Tree, alpha: float | torch.Tensor = 1.0) -> Tree:
    """``a + alpha * b`` for a Python or 0-d tensor scalar ``alpha``."""
    if under_transform(a, b):
        return {k: a[k] + alpha * b[k] for k in a}
    if isinstance(alpha, torch.Tensor):
        return _wrap(a, torch._foreach_add(_vals(a), torch._foreach_mul(_vals(b), alpha)))
    return _wrap(a, torch._foreach_add(_vals(a), _vals(b), alpha=alpha))


def sub(a: Tree, b: Tree) -> Tree:
    """``a - b``."""
    return add(a, b, -1.0)


def scale(a: Tree, s: float | torch.Tensor) -> Tree:
    """``s * a`` for a Python or 0-d tensor scalar ``s``."""
    if under_transform(a):
        return {k: s * v for k, v in a.items()}
    return _wrap(a, torch._foreach_mul(_vals(a), s))


def dot(a: Tree, b: Tree) -> torch.Tensor:
    """Inner product as a 0-d tensor (no host synchronisation): one fused product and one sum over
    the concatenated products, instead of a sum per tensor."""
    if under_transform(a, b):
        return torch.stack([(a[k] * b[k]).sum() for k in a]).sum()
    return torch.cat([p.reshape(-1) for p in torch._foreach_mul(_vals(a), _vals(b))]).sum()


def norm(a: Tree) -> torch.Tensor:
    """Euclidean norm of the whole dict as a 0-d tensor."""
    norms = torch._foreach_norm(_vals(a)) if not under_transform(a) else [torch.linalg.vector_norm(v) for v in a.values()]
    return torch.linalg.vector_norm(torch.stack(norms))


def all_finite(a: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """0-d boolean tensor: every entry of every tensor is finite.

    One fused pass: ``x·0`` is 0 for a finite ``x`` and NaN for ±inf or NaN, so the 1-norms of the
    products are all 0 exactly when every entry is finite, whatever the dtype (a norm of the values
    themselves could overflow on finite float16 entries).
    """
    vals = _vals(a)
    if under_transform(a):
        return torch.stack([torch.isfinite(v).all() for v in vals]).all()
    return torch.isfinite(torch.stack(torch._foreach_norm(torch._foreach_mul(vals, 0.0), 1)).sum())


def flatten(a: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a dict into one vector (for dense solves)."""
    return torch.cat([v.reshape(-1) for v in a.values()])


def unflatten(vec: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Tree:
    """Inverse of :func:`flatten`, shaped like ``like``."""
    out, i = {}, 0
    for k, v in like.items():
        n = v.numel()
        out[k] = vec[i : i + n].view_as(v)
        i += n
    return out


def select(flag: torch.Tensor, a: Tree, b: Tree) -> Tree:
    """``a`` where the 0-d boolean ``flag`` is true, else ``b``: a device-side branch (no host read).

    A select, not ``flag * a``: the rejected side may hold an overflowed or NaN iterate.
    """
    return {k: torch.where(flag, a[k], b[k]) for k in a}
