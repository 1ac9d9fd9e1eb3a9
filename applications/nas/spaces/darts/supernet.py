"""The DARTS search space as modules: the mixed cell and the search network (operations: :mod:`.ops`).

    stem (conv3x3 + BN, 3C channels) -> L cells, reduction cells at L//3 and 2L//3 (channels doubled,
    resolution halved) -> global average pool -> linear

Each cell reads the outputs of the two previous cells (``s0``, ``s1``), brings both to C channels
(``FactorizedReduce`` on ``s0`` when the previous cell reduced, so both inputs share one resolution),
evaluates four intermediate nodes on 14 mixed edges and concatenates them (4C channels out). Normal
cells share ``alpha_normal``, reduction cells ``alpha_reduce`` (each 14 x 8, see
:mod:`applications.nas.spaces.darts.genotype`); edges leaving the input nodes of a reduction cell have stride 2.
As in DARTS, every BatchNorm has no affine parameters during search (see :mod:`applications.nas.spaces.nb201.ops`).
"""

from __future__ import annotations

import torch
from torch import nn

from applications.nas.spaces.darts.genotype import EDGES, NUM_INPUTS, NUM_INTERMEDIATE, OPERATIONS
from applications.nas.spaces.darts.ops import FactorizedReduce, make_darts_operation
from applications.nas.spaces.mixing import Mixing, softmax_mixing
from applications.nas.spaces.nb201.cell import mix
from applications.nas.spaces.nb201.ops import ReLUConvBN, batch_norm

ALPHA_NAMES: tuple[str, str] = ("alpha_normal", "alpha_reduce")
"""Names of the two architecture parameters of :class:`DartsSupernet`; every other parameter is a weight."""


class DartsMixedCell(nn.Module):
    """A DARTS search cell: 14 edges, each the softmax(α)-weighted sum of the seven non-``none`` operations.

    Args:
        c_prev_prev, c_prev: channels of the two previous cells' outputs.
        channels: C of this cell (its output has ``4 * channels``).
        reduction: whether this cell halves the resolution (stride 2 on edges from the input nodes).
        reduction_prev: whether the previous cell did, so ``s0`` is at twice the resolution of ``s1``.
        track_running_stats: see :func:`applications.nas.spaces.nb201.ops.batch_norm`.
    """

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool,
                 track_running_stats: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (FactorizedReduce(c_prev_prev, channels, track_running_stats) if reduction_prev
                                       else ReLUConvBN(c_prev_prev, channels, 1, 1, track_running_stats))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, track_running_stats)
        edges = []
        for _, from_node in EDGES:
            stride = 2 if reduction and from_node < NUM_INPUTS else 1
            ops = (make_darts_operation(name, channels, stride, track_running_stats) for name in OPERATIONS[1:])
            edges.append(nn.ModuleList(op for op in ops if op is not None))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Args:
            s0, s1: outputs of the cell before the previous one and of the previous one.
            weights: ``(14, 8)`` mixture weights, rows summing to one; column 0 (``none``) only enters
                through the softmax.
        """
        nodes = [self.preprocess0(s0), self.preprocess1(s1)]
        # The edges into a node are consecutive rows of α: each node is one contraction of all its edges'
        # operation outputs with those rows (contiguous once, so each node's block is a view).
        rows = weights[:, 1:].contiguous()
        for to_node in range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE):
            into = [edge for edge, (target, _) in enumerate(EDGES) if target == to_node]
            outputs = [op(nodes[EDGES[edge][1]]) for edge in into for op in self.edges[edge]]  # type: ignore[union-attr]
            nodes.append(mix(rows[into[0]: into[-1] + 1].reshape(-1), outputs))
        return torch.cat(nodes[NUM_INPUTS:], dim=1)


class DartsSupernet(nn.Module):
    """The DARTS search network, driven by ``alpha_normal`` and ``alpha_reduce``.

    Both α are ``(14, 8)``, initialised at 1e-3 x N(0, 1) as in DARTS. Split the parameters with
    :meth:`split_parameters` and evaluate on parameter dicts with
    ``torch.func.functional_call(net, (weights, alphas), x)``.

    Args:
        channels: C, the width of the first cells (DARTS CIFAR-10 search: 16).
        layers: L, the number of cells, at least 3 (DARTS CIFAR-10 search: 8); cells L//3 and 2L//3 reduce.
        in_channels: image channels.
        num_classes: classifier outputs.
        track_running_stats: whether BatchNorm keeps running statistics for evaluation.
        stem_multiplier: the stem's output has ``stem_multiplier * channels`` channels (DARTS: 3).

    Example:
        >>> net = DartsSupernet(channels=4, layers=3, in_channels=1, num_classes=10)
        >>> net(torch.zeros(2, 1, 14, 14)).shape
        torch.Size([2, 10])
    """

    def __init__(self, channels: int = 16, layers: int = 8, in_channels: int = 3, num_classes: int = 10,
                 track_running_stats: bool = False, stem_multiplier: int = 3) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"a DARTS network needs at least 3 layers (a normal and two reduction cells), got {layers}")
        width = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  batch_norm(width, track_running_stats))
        c_prev_prev, c_prev, c_cell = width, width, channels
        reduction_prev = False
        cells = []
        for layer in range(layers):
            reduction = layer in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cell *= 2
            cells.append(DartsMixedCell(c_prev_prev, c_prev, c_cell, reduction, reduction_prev, track_running_stats))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, NUM_INTERMEDIATE * c_cell
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, num_classes)
        num_ops = len(OPERATIONS)
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(len(EDGES), num_ops))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(len(EDGES), num_ops))
        self.mixing: Mixing = softmax_mixing
        """α -> mixing weights (see :mod:`applications.nas.spaces.mixing`); softmax unless a search sets another."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal = self.mixing("alpha_normal", self.alpha_normal)
        reduce = self.mixing("alpha_reduce", self.alpha_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(s1.mean(dim=(2, 3)))

    def split_parameters(self) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
        """The network's own parameter tensors as ``(weights, alphas)`` dicts (no copies)."""
        weights = {name: p for name, p in self.named_parameters() if name not in ALPHA_NAMES}
        return weights, {name: getattr(self, name) for name in ALPHA_NAMES}
