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

Each decision also says how clear it was: its margin (the chosen operation's drop minus the next best
allowed one) and the margin's standard error over the validation images. Both masked supernets are
scored on the same images, so the error is that of a paired difference, far smaller than two
independent accuracies': a margin within two standard errors is a near tie that another seed, edge
order or rounding can turn.

Optionally a near tie goes to a ``preferred`` group (the convolutions): where operations of the group have
drops within ``tie_z`` paired standard errors of the largest allowed drop, the one of them with the largest
drop is kept. The measurement cannot tell such operations apart, and weight sharing is known to favour the
parameter-free ones (the collapse above), so the parametric one is the better prior there.

This module holds the procedure on an abstract supernet (a per-image correctness and a fine-tuning
callback), so that its logic is tested apart from any network; the search loop supplies both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def perturbation_select(
    weights: torch.Tensor,
    correct: Callable[[torch.Tensor], torch.Tensor],
    order: Sequence[int],
    tune: Callable[[torch.Tensor], None] | None = None,
    inert_columns: Sequence[int] = (),
    on_edge: Callable[[dict[str, Any]], None] | None = None,
    capped: Sequence[int] = (),
    cap: int | None = None,
    preferred: Sequence[int] = (),
    tie_z: float = 2.0,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Decides the edges in ``order`` by perturbation; returns the final one-hot weights and a record per edge.

    Args:
        weights: ``(edges, operations)`` mixing weights of the trained supernet (softmax(α) or the
            Dirichlet mean), the starting point; not modified.
        correct: whether the supernet with the given mixing weights classifies each validation image right
            (a vector of 0/1 or bools, the same images in the same order on every call); its mean is the
            accuracy.
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
        preferred: the columns a near tie goes to (empty: the largest drop always wins); where the largest
            allowed drop is not a preferred column's, the preferred allowed column with the largest drop is
            kept if its drop is within ``tie_z`` paired standard errors of the largest, and the record says
            ``"tie_broken": True``.
        tie_z: how many paired standard errors make a near tie.

    Returns:
        ``(chosen, records)``: ``chosen`` has one 1 per decided row; each record holds the edge, the chosen
        operation's column, the accuracy before masking, the accuracy drop of masking each column, the
        runner-up (the allowed column with the next largest drop; ``None`` if there is none), the margin
        (the two drops' difference) and its paired standard error over the images.
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
        base = correct(current).float()
        outcomes = []  # per column: the masked supernet's per-image correctness
        for column in range(current.shape[1]):
            if column in inert_columns:
                outcomes.append(base)
                continue
            masked = current.clone()
            masked[edge, column] = 0
            outcomes.append(correct(masked).float())
        # Accuracies as counts over the image count, so that equal counts tie exactly.
        accuracy = int(base.sum()) / len(base)
        drops = [accuracy - int(o.sum()) / len(o) for o in outcomes]
        allowed = [k for k in range(len(drops)) if cap is None or held < cap or k not in capped]
        best = max(range(len(drops)), key=lambda k: (drops[k], -k))  # ties: the lower column
        choice = max(allowed, key=lambda k: (drops[k], -k))
        turned_by_cap, tie_broken = choice != best, False
        if preferred and choice not in preferred:
            near = [k for k in allowed if k in preferred
                    and drops[choice] - drops[k] <= tie_z * _paired_error(outcomes[k], outcomes[choice])]
            if near:
                choice, tie_broken = max(near, key=lambda k: (drops[k], -k)), True
        others = [k for k in allowed if k != choice]
        runner_up = max(others, key=lambda k: (drops[k], -k)) if others else None
        margin = margin_se = None
        if runner_up is not None:
            margin, margin_se = drops[choice] - drops[runner_up], _paired_error(outcomes[runner_up], outcomes[choice])
        held += choice in capped
        current[edge] = 0
        current[edge, choice] = 1
        records.append({"edge": edge, "choice": choice, "accuracy": accuracy, "drops": drops, "capped": turned_by_cap,
                        "tie_broken": tie_broken, "runner_up": runner_up, "margin": margin, "margin_se": margin_se})
        if on_edge is not None:
            on_edge(records[-1])
        if tune is not None and position < len(order) - 1:
            tune(current)
    return current, records


def _paired_error(first: torch.Tensor, second: torch.Tensor) -> float:
    """The standard error of the accuracy difference of two masked supernets scored on the same images (their
    per-image outcomes): only the images on which they disagree contribute (McNemar)."""
    difference = first - second
    return float(difference.std() / len(difference) ** 0.5) if len(difference) > 1 else float("nan")


def clear_decisions(records: Sequence[dict[str, Any]], z: float = 2.0) -> int:
    """How many of the records' decisions beat their runner-up by more than ``z`` standard errors of the margin."""
    return sum(r.get("margin") is not None and r["margin"] > 0 and r["margin"] > z * r["margin_se"] for r in records)
