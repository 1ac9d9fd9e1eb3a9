"""Perturbation-based selection of the final cell (Wang et al., "Rethinking Architecture Selection in
Differentiable NAS", ICLR 2021: DARTS-PT).

The magnitude of α need not say how much an operation contributes to the trained supernet. DARTS-PT
asks the supernet instead: for one undecided edge at a time, it masks each operation in turn (its
mixing weight set to zero, the others unchanged), measures the supernet's validation accuracy, and keeps
the operation whose removal costs the most. The edge is then fixed to that operation, the supernet's
weights are fine-tuned for a few steps, and the next edge follows. Masking ``none`` changes nothing (its
output is zero), so ``none`` is kept only where removing every other operation helps.

Optionally the cell holds at most ``cap`` operations of a ``capped`` group (the parameter-free ones:
``none``, ``skip_connect``, ``avg_pool_3x3``, whose surplus is the collapse of differentiable NAS): once
``cap`` decided edges hold one, later edges choose among the other operations (P-DARTS limits skip
connections in the same way).

This module holds the procedure on an abstract supernet (an accuracy and a fine-tuning callback), so
that its logic is tested apart from any network; the search loop supplies both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def perturbation_select(
    weights: torch.Tensor,
    accuracy: Callable[[torch.Tensor], float],
    order: Sequence[int],
    tune: Callable[[torch.Tensor], None] | None = None,
    inert_columns: Sequence[int] = (),
    on_edge: Callable[[dict[str, Any]], None] | None = None,
    capped: Sequence[int] = (),
    cap: int | None = None,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Decides the edges in ``order`` by perturbation; returns the final one-hot weights and a record per edge.

    Args:
        weights: ``(edges, operations)`` mixing weights of the trained supernet (softmax(α) or the
            Dirichlet mean), the starting point; not modified.
        accuracy: the supernet's validation accuracy with the given mixing weights.
        order: the edges, in the order they are decided (DARTS-PT: a random order).
        tune: fine-tunes the supernet's weights with the given mixing weights; called after every edge
            but the last.
        inert_columns: operations whose output is zero (``none``): masking them changes nothing, so their
            drop is 0 without a measurement.
        on_edge: called with each edge's record once it is decided (progress reports).
        capped: the columns of the capped group (the parameter-free operations).
        cap: at most this many edges choose a column of ``capped`` (``None``: no limit); once it is reached,
            later edges choose among the other columns, and their record says ``"capped": True`` where the
            best drop was a capped column's. The cap is not measured: masking a capped column is still scored.

    Returns:
        ``(chosen, records)``: ``chosen`` has one 1 per decided row; each record holds the edge, the chosen
        operation's column, the accuracy before masking, and the accuracy drop of masking each column.
    """
    if sorted(order) != sorted(set(order)) or any(not 0 <= e < weights.shape[0] for e in order):
        raise ValueError(f"order {list(order)} must list distinct edges among 0..{weights.shape[0] - 1}")
    if cap is not None and (cap < 0 or len(set(capped)) >= weights.shape[1]):
        raise ValueError(f"cap {cap} over columns {list(capped)}: expected cap >= 0 and fewer capped columns than "
                         f"the {weights.shape[1]} operations (an edge must keep a choice)")
    held = 0  # decided edges holding a capped column
    current = weights.detach().clone()
    records: list[dict[str, Any]] = []
    for position, edge in enumerate(order):
        base = accuracy(current)
        drops = []
        for column in range(current.shape[1]):
            if column in inert_columns:
                drops.append(0.0)
                continue
            masked = current.clone()
            masked[edge, column] = 0
            drops.append(base - accuracy(masked))
        allowed = [k for k in range(len(drops)) if cap is None or held < cap or k not in capped]
        best = max(range(len(drops)), key=lambda k: (drops[k], -k))  # ties: the lower column
        choice = max(allowed, key=lambda k: (drops[k], -k))
        held += choice in capped
        current[edge] = 0
        current[edge, choice] = 1
        records.append({"edge": edge, "choice": choice, "accuracy": base, "drops": drops, "capped": choice != best})
        if on_edge is not None:
            on_edge(records[-1])
        if tune is not None and position < len(order) - 1:
            tune(current)
    return current, records
