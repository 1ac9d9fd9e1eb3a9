"""The NAS-Bench-201 cell as a module: the mixed cell searched over, and the fixed cell it derives to."""

from __future__ import annotations

import torch
from torch import nn

from applications.nas.spaces.nb201.genotype import EDGES, NUM_NODES, OPERATIONS, Cell
from applications.nas.spaces.nb201.ops import make_operation


def _run_cell(x: torch.Tensor, edge_outputs) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Evaluates the four-node DAG, with ``edge_outputs(edge, node_input)`` giving one edge's value."""
    nodes = [x]
    for to_node in range(1, NUM_NODES):
        total = None
        for edge, (target, from_node) in enumerate(EDGES):
            if target != to_node:
                continue
            out = edge_outputs(edge, nodes[from_node])
            if out is not None:
                total = out if total is None else total + out
        # A node whose inputs are all `none` is zero; keep it a tensor so later nodes can add to it.
        nodes.append(torch.zeros_like(x) if total is None else total)
    return nodes[-1]


def mix(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_k weights[k] · outputs[k]`` as one product: the outputs are stacked once and contracted with
    the weight vector (one matrix product, two in the backward pass), instead of a scalar product, an
    addition and an indexing of α per operation, each of which is a kernel launch forward and backward."""
    return torch.tensordot(weights, torch.stack(outputs), dims=1)


def _must_exist(op: nn.Module | None) -> nn.Module:
    assert op is not None, "only `none` has no module, and mixtures leave it out"
    return op


class MixedCell(nn.Module):
    """Every edge carries all five operations; its output is their softmax(α)-weighted sum.

    The cell holds no α: the supernet passes the edge weights in, so one α is shared by every cell.
    """

    def __init__(self, channels: int, track_running_stats: bool) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleList(_must_exist(make_operation(name, channels, track_running_stats)) for name in OPERATIONS[1:])
            for _ in EDGES
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Args:
            x: the cell input, ``(B, C, H, W)``.
            weights: ``(num_edges, num_operations)`` mixture weights, rows summing to one.
        """

        # Column 0 is `none`, whose output is zero: it only enters through the softmax. One view per
        # edge, taken together (a single backward op instead of one per edge and operation).
        rows = weights[:, 1:].unbind(0)

        def mixture(edge: int, node_input: torch.Tensor) -> torch.Tensor:
            return mix(rows[edge], [op(node_input) for op in self.edges[edge]])

        return _run_cell(x, mixture)

    def forward_path(self, x: torch.Tensor, choice: tuple[int, ...]) -> torch.Tensor:
        """One operation per edge (``choice[e]`` indexes :data:`OPERATIONS`, 0 = ``none``), with the
        cell's own shared weights: a single path through the mixed cell, for weight-sharing random search."""
        def single(edge: int, node_input: torch.Tensor) -> torch.Tensor | None:
            return None if choice[edge] == 0 else self.edges[edge][choice[edge] - 1](node_input)

        return _run_cell(x, single)


class FixedCell(nn.Module):
    """A derived cell: one operation per edge, for retraining from scratch."""

    def __init__(self, cell: Cell, channels: int, track_running_stats: bool = True) -> None:
        super().__init__()
        self.cell = cell
        self.edges = nn.ModuleList(
            nn.Identity() if op is None else op  # placeholder for `none`, skipped in forward
            for op in (make_operation(name, channels, track_running_stats) for name in cell.ops)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_cell(
            x, lambda edge, node_input: None if self.cell.ops[edge] == "none" else self.edges[edge](node_input)
        )
