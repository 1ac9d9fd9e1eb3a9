"""The network a NAS-Bench-201 cell is retrained in: the macro skeleton of
:mod:`applications.nas.spaces.nb201.network` with copies of one fixed cell."""

from __future__ import annotations

import torch

from applications.nas.spaces.nb201.cell import FixedCell
from applications.nas.spaces.nb201.genotype import Cell
from applications.nas.spaces.nb201.network import MacroNetwork


class DerivedNetwork(MacroNetwork):
    """The same macro network with one fixed cell repeated, trained from scratch after the search."""

    def __init__(
        self,
        cell: Cell,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            lambda width: FixedCell(cell, width, track_running_stats),
            channels,
            cells_per_stage,
            in_channels,
            num_classes,
            track_running_stats,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, lambda layer, h: layer(h))
