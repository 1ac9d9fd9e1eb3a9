"""Perturbation-based selection of the final cell (Wang et al., "Rethinking Architecture Selection in
Differentiable NAS", ICLR 2021: DARTS-PT).

The magnitude of α need not say how much an operation contributes to the trained supernet. DARTS-PT
asks the supernet instead: for one undecided edge at a time, it masks each operation in turn (its
mixing weight set to zero, the others unchanged), measures the supernet's validation accuracy, and keeps
the operation whose removal costs the most. The edge is then fixed to that operation, the supernet's
weights are fine-tuned for a few steps, and the next edge follows. Masking ``none`` changes nothing (its
output is zero), so ``none`` is kept only where removing every other operation helps.

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

    Returns:
        ``(chosen, records)``: ``chosen`` has one 1 per decided row; each record holds the edge, the chosen
        operation's column, the accuracy before masking, and the accuracy drop of masking each column.
    """
    if sorted(order) != sorted(set(order)) or any(not 0 <= e < weights.shape[0] for e in order):
        raise ValueError(f"order {list(order)} must list distinct edges among 0..{weights.shape[0] - 1}")
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
        choice = max(range(len(drops)), key=lambda k: (drops[k], -k))  # ties: the lower column
        current[edge] = 0
        current[edge, choice] = 1
        records.append({"edge": edge, "choice": choice, "accuracy": base, "drops": drops})
        if on_edge is not None:
            on_edge(records[-1])
        if tune is not None and position < len(order) - 1:
            tune(current)
    return current, records
