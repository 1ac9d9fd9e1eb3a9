"""Calling the user's callables: an exception raised inside one says where hypergrad called it.

The exception keeps its type and traceback and gains a note (PEP 678) such as::

    hypergrad: raised in inner_loss(params, hparams, batch) with inner_batch=None,
    called by hypergradient(method=CG) for the Hessian-vector products (∂_w f)

so that ``TypeError: 'NoneType' object is not subscriptable`` from a loss that indexes its batch points
at the argument that was forgotten. The estimator is set once per call of a public entry point
(:func:`estimator_context`); the callable, the step and the batch are named where the call happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

_ESTIMATOR: ContextVar[str] = ContextVar("hypergrad_estimator", default="")
_NO_BATCH = object()


@contextmanager
def estimator_context(description: str) -> Iterator[None]:
    """Name the entry point and estimator (``hypergradient(method=CG)``) in the notes of the calls inside."""
    token = _ESTIMATOR.set(description)
    try:
        yield
    finally:
        _ESTIMATOR.reset(token)


def describe(value: Any, depth: int = 0) -> str:
    """A short description of a batch: ``None``, ``Tensor[64, 10] float32``, ``tuple(Tensor[64, 10] float32, ...)``."""
    if isinstance(value, torch.Tensor):
        return f"Tensor[{', '.join(map(str, value.shape))}] {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (tuple, list)) and depth < 2:
        items = [describe(v, depth + 1) for v in value[:3]] + (["..."] if len(value) > 3 else [])
        return f"{type(value).__name__}({', '.join(items)})"
    if isinstance(value, dict) and depth < 2:
        keys = list(value)[:4]
        return f"dict(keys={keys!r}{', ...' if len(value) > 4 else ''})"
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} object"


def _add_note(err: BaseException, note: str) -> None:
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:  # Python 3.10: kept for handlers that read it; the traceback does not show it
        err.__notes__ = [*getattr(err, "__notes__", []), note]  # type: ignore[attr-defined]


def call(fn: Callable[..., Any], name: str, step: str, *args: Any, batch_name: str = "", batch: Any = _NO_BATCH
         ) -> Any:
    """``fn(*args)``; an exception raised inside gains a note naming ``name``, the estimator, ``step`` and the batch.

    Args:
        fn: the user's callable (a loss, a batch sampler, a preconditioner).
        name: how the user passed it, with its signature (``inner_loss(params, hparams, batch)``).
        step: what the estimator was computing (``the Hessian-vector products (∂_w f)``).
        *args: the arguments of the call.
        batch_name: the argument the batch came from (``inner_batch``), described in the note.
        batch: that batch.
    """
    try:
        return fn(*args)
    except Exception as err:
        where = f" with {batch_name}={describe(batch)}" if batch is not _NO_BATCH else ""
        by = f"called by {_ESTIMATOR.get()} " if _ESTIMATOR.get() else "called "
        _add_note(err, f"hypergrad: raised in {name}{where}, {by}for {step}")
        raise
