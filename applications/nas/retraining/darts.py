"""The DARTS evaluation network: a derived genotype's cells stacked and trained from scratch.

    stem (conv3x3 + BN, 3C channels) -> L cells, reduction cells at L//3 and 2L//3 (channels doubled,
    resolution halved) -> global average pool -> linear
    auxiliary head on the output of cell 2L//3 (training only)

Each cell has the structure of :class:`~applications.nas.spaces.darts.supernet.DartsMixedCell` with one operation
per kept edge instead of a mixture: node ``j`` sums the two operations the genotype lists for it, and
the cell concatenates the nodes in the genotype's ``concat``. As in DARTS's evaluation network
(Liu et al., ICLR 2019), BatchNorm is affine, pooling is not followed by BatchNorm, and during training
each non-identity operation is dropped per sample with probability ``drop_path_prob`` (drop-path,
rescaled by 1/(1−p)). The operations themselves are built by
:func:`~applications.nas.spaces.darts.ops.make_darts_operation`.

The auxiliary head follows DARTS's (ReLU, pool, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU,
linear) except that it pools adaptively to 2x2 instead of with a fixed 5x5 window at stride 3, which
gives the same 2x2 map on CIFAR's 8x8 features and also works on smaller images.
"""

from __future__ import annotations

import torch
from torch import nn

from applications.nas.spaces.darts.genotype import NUM_INPUTS, CellGenes, Genotype
from applications.nas.spaces.darts.ops import FactorizedReduce, make_darts_operation
from applications.nas.spaces.nb201.ops import ReLUConvBN


def _affine(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm made affine and tracking running statistics (evaluation setting)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(child.num_features))
        else:
            _affine(child)
    return module


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob``, scaling the rest by 1/(1−p)."""
    keep = 1.0 - drop_prob
    mask = torch.bernoulli(torch.full((x.shape[0], 1, 1, 1), keep, device=x.device, dtype=x.dtype))
    return x * mask / keep


def _operation(name: str, channels: int, stride: int) -> nn.Module:
    op = make_darts_operation(name, channels, stride, track_running_stats=True)
    assert op is not None  # a genotype holds no `none`
    if name.endswith("pool_3x3"):
        return op[0]  # type: ignore[index]  # the pool without the search's BatchNorm
    return _affine(op)


class DartsEvalCell(nn.Module):
    """One cell of a genotype.

    Args:
        genes: the cell's ``(operation, input node)`` pairs, two per intermediate node.
        concat: the nodes the output concatenates.
        c_prev_prev, c_prev: channels of the two previous cells' outputs.
        channels: C of this cell (its output has ``len(concat) * channels``).
        reduction: whether this cell halves the resolution.
        reduction_prev: whether the previous cell did.
    """

    def __init__(self, genes: CellGenes, concat: tuple[int, ...], c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = _affine(FactorizedReduce(c_prev_prev, channels, True) if reduction_prev
                                   else ReLUConvBN(c_prev_prev, channels, 1, 1, True))
        self.preprocess1 = _affine(ReLUConvBN(c_prev, channels, 1, 1, True))
        self.sources = [source for _, source in genes]
        self.ops = nn.ModuleList(_operation(name, channels, 2 if reduction and source < NUM_INPUTS else 1)
                                 for name, source in genes)
        self.concat = concat

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        nodes = [self.preprocess0(s0), self.preprocess1(s1)]
        for first in range(0, len(self.ops), 2):
            total = None
            for op, source in zip(self.ops[first:first + 2], self.sources[first:first + 2]):
                h = op(nodes[source])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None
            nodes.append(total)
        return torch.cat([nodes[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier on the features after the second reduction (module docstring)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsEvalNetwork(nn.Module):
    """The network DARTS trains a genotype in (CIFAR-10 evaluation: C = 36, L = 20, auxiliary head).

    In training mode ``forward`` returns ``(logits, auxiliary logits)`` (the second ``None`` without an
    auxiliary head); in eval mode the logits alone. Set :attr:`drop_path_prob` before each epoch (DARTS
    raises it linearly from 0 to its final value over training).

    Args:
        genotype: the normal and reduction cells.
        channels: C of the first cells.
        layers: L, the number of cells (at least 3).
        in_channels: image channels.
        num_classes: classifier outputs.
        auxiliary: add the auxiliary head.
        stem_multiplier: the stem has ``stem_multiplier * channels`` channels (DARTS: 3).

    Example:
        >>> from applications.nas.spaces.darts.genotype import derive_genotype
        >>> net = DartsEvalNetwork(derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8)), 4, 3, 1, 10).eval()
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, genotype: Genotype, channels: int = 36, layers: int = 20, in_channels: int = 3,
                 num_classes: int = 10, auxiliary: bool = True, stem_multiplier: int = 3) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"a DARTS network needs at least 3 layers (a normal and two reduction cells), got {layers}")
        width = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.drop_path_prob = 0.0
        self.aux_position = 2 * layers // 3
        c_prev_prev, c_prev, c_cell = width, width, channels
        reduction_prev = False
        cells = []
        aux_channels = 0
        for layer in range(layers):
            reduction = layer in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cell *= 2
            genes, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                         genotype.normal_concat)
            cells.append(DartsEvalCell(genes, concat, c_prev_prev, c_prev, c_cell, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, len(concat) * c_cell
            if layer == self.aux_position:
                aux_channels = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary = AuxiliaryHead(aux_channels, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0 = s1 = self.stem(x)
        for layer, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if layer == self.aux_position and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(s1.mean(dim=(2, 3)))
        return (logits, aux) if self.training else logits
