"""Derivation of the discrete cell from the architecture weights α."""

from __future__ import annotations

import torch

from applications.nas.spaces.nb201.genotype import EDGES, OPERATIONS, Cell


def edge_probabilities(alpha: torch.Tensor) -> torch.Tensor:
    """softmax(α) per edge: the mixture weight of each operation, shape ``(edges, operations)``."""
    return torch.softmax(alpha.detach().float(), dim=-1)


def derive_cell(alpha: torch.Tensor, exclude_none: bool = False) -> Cell:
    """The cell that keeps, on each edge, the operation with the largest α (as NAS-Bench-201 derives).

    Args:
        alpha: ``(6, 5)`` architecture weights, columns in :data:`OPERATIONS` order.
        exclude_none: pick among the four non-``none`` operations only. Weak searches often leave
            ``none`` on top of edges where α barely moved, which can disconnect the cell.

    Example:
        >>> alpha = torch.zeros(6, 5); alpha[:, 3] = 1.0
        >>> str(derive_cell(alpha)).count("nor_conv_3x3")
        6
    """
    if tuple(alpha.shape) != (len(EDGES), len(OPERATIONS)):
        raise ValueError(f"alpha must have shape ({len(EDGES)}, {len(OPERATIONS)}), got {tuple(alpha.shape)}")
    scores = alpha.detach().clone().float()
    if exclude_none:
        scores[:, OPERATIONS.index("none")] = float("-inf")
    return Cell(tuple(OPERATIONS[int(k)] for k in scores.argmax(dim=-1)))


def format_alpha_table(alpha: torch.Tensor, operations: tuple[str, ...] = OPERATIONS,
                       edges: tuple[tuple[int, int], ...] = EDGES) -> str:
    """softmax(α) as a text table, one row per edge, the winning operation of each row marked.

    Args:
        alpha: ``(edges, operations)`` architecture weights.
        operations, edges: the column and row labels (default: NAS-Bench-201's).
    """
    probs = edge_probabilities(alpha)
    width = max(len(op) for op in operations)
    lines = ["edge      " + " ".join(f"{op:>{width}}" for op in operations)]
    for (to_node, from_node), row in zip(edges, probs):
        best = int(row.argmax())
        cells = [f"{p:>{width - 1}.3f}{'*' if k == best else ' '}" for k, p in enumerate(row.tolist())]
        lines.append(f"{from_node} -> {to_node}    " + " ".join(cells))
    return "\n".join(lines)
