"""The NAS-Bench-201 macro network: stem, three stages of cells, residual reductions, classifier.

    stem (conv3x3 + BN) -> N cells (C) -> reduction -> N cells (2C) -> reduction -> N cells (4C)
    -> BN + ReLU -> global average pool -> linear

:class:`Supernet` fills it with mixed cells sharing one architecture parameter ``alpha``;
:class:`~applications.nas.retraining.nb201.DerivedNetwork` with copies of one fixed cell, for retraining.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from applications.nas.spaces.mixing import Mixing, softmax_mixing
from applications.nas.spaces.nb201.cell import MixedCell
from applications.nas.spaces.nb201.genotype import EDGES, OPERATIONS, Cell
from applications.nas.spaces.nb201.ops import ResidualReduction, batch_norm

ALPHA_NAME = "alpha"
"""Name of the architecture parameter in :class:`Supernet`; every other parameter is a weight."""


class MacroNetwork(nn.Module):
    """The skeleton above, with the cell of each position made by ``make_cell(width)``."""

    def __init__(
        self,
        make_cell: Callable[[int], nn.Module],
        channels: int,
        cells_per_stage: int,
        in_channels: int,
        num_classes: int,
        track_running_stats: bool,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), batch_norm(channels, track_running_stats)
        )
        layers: list[nn.Module] = []
        for stage in range(3):
            width = channels * 2**stage
            if stage > 0:
                layers.append(ResidualReduction(width // 2, width, track_running_stats))
            layers.extend(make_cell(width) for _ in range(cells_per_stage))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(batch_norm(4 * channels, track_running_stats), nn.ReLU())
        self.classifier = nn.Linear(4 * channels, num_classes)

    def _forward(self, x: torch.Tensor, run_cell: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x) if isinstance(layer, ResidualReduction) else run_cell(layer, x)
        x = self.head(x).mean(dim=(2, 3))
        return self.classifier(x)


class Supernet(MacroNetwork):
    """The search network: every cell a :class:`MixedCell`, all driven by one ``alpha``.

    ``alpha`` has shape ``(6, 5)`` (edges x operations, see :mod:`applications.nas.spaces.nb201.genotype`) and is
    initialised at 1e-3 x N(0, 1) as in NAS-Bench-201. Split the parameters with :meth:`split_parameters`
    and evaluate on parameter dicts with ``torch.func.functional_call(net, (weights, alphas), x)``.

    Args:
        channels: C, the width of the first stage (NAS-Bench-201: 16).
        cells_per_stage: N, cells per stage (NAS-Bench-201: 5).
        in_channels: image channels.
        num_classes: classifier outputs.
        track_running_stats: whether BatchNorm keeps running statistics for evaluation.

    Example:
        >>> net = Supernet(channels=4, cells_per_stage=1, in_channels=1, num_classes=10)
        >>> net(torch.zeros(2, 1, 14, 14)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__(
            lambda width: MixedCell(width, track_running_stats),
            channels,
            cells_per_stage,
            in_channels,
            num_classes,
            track_running_stats,
        )
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPERATIONS)))
        self.mixing: Mixing = softmax_mixing
        """α -> mixing weights (see :mod:`applications.nas.spaces.mixing`); softmax unless a search sets another."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.mixing(ALPHA_NAME, self.alpha)
        return self._forward(x, lambda cell, h: cell(h, weights))

    def forward_path(self, x: torch.Tensor, cell: Cell) -> torch.Tensor:
        """The network with every mixed cell reduced to ``cell``'s operations, on the shared weights."""
        choice = tuple(OPERATIONS.index(op) for op in cell.ops)
        return self._forward(x, lambda mixed, h: mixed.forward_path(h, choice))

    def split_parameters(self) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
        """The network's own parameter tensors as ``(weights, alphas)`` dicts (no copies)."""
        weights = {name: p for name, p in self.named_parameters() if name != ALPHA_NAME}
        return weights, {ALPHA_NAME: self.alpha}
