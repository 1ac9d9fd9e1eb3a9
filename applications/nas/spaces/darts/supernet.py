"""The DARTS search space as modules: its operations, the mixed cell and the search network.

    stem (conv3x3 + BN, 3C channels) -> L cells, reduction cells at L//3 and 2L//3 (channels doubled,
    resolution halved) -> global average pool -> linear

Each cell reads the outputs of the two previous cells (``s0``, ``s1``), brings both to C channels
(``FactorizedReduce`` on ``s0`` when the previous cell reduced, so both inputs share one resolution),
evaluates four intermediate nodes on 14 mixed edges and concatenates them (4C channels out). Normal
cells share ``alpha_normal``, reduction cells ``alpha_reduce`` (each 14 x 8, see
:mod:`applications.nas.spaces.darts.genotype`); edges leaving the input nodes of a reduction cell have stride 2.
As in DARTS, every BatchNorm has no affine parameters during search (see :mod:`applications.nas.spaces.nb201.ops`).

Unlike DARTS's code, ``FactorizedReduce`` also accepts odd resolutions (e.g. 7x7 after one reduction of
a 14x14 image): its shifted half is zero-padded, which changes nothing on even sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from applications.nas.spaces.darts.genotype import EDGES, NUM_INPUTS, NUM_INTERMEDIATE, OPERATIONS
from applications.nas.spaces.nb201.ops import ReLUConvBN, batch_norm

ALPHA_NAMES: tuple[str, str] = ("alpha_normal", "alpha_reduce")
"""Names of the two architecture parameters of :class:`DartsSupernet`; every other parameter is a weight."""


def _dil_conv(c_in: int, c_out: int, kernel_size: int, stride: int, dilation: int,
              track_running_stats: bool) -> nn.Sequential:
    """ReLU, depthwise (dilated) convolution, pointwise convolution, BatchNorm: ``dil_conv_kxk``."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=dilation * (kernel_size - 1) // 2,
                  dilation=dilation, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        batch_norm(c_out, track_running_stats),
    )


def _sep_conv(channels: int, kernel_size: int, stride: int, track_running_stats: bool) -> nn.Sequential:
    """Two undilated depthwise-separable blocks, the first carrying the stride: ``sep_conv_kxk``."""
    return nn.Sequential(
        _dil_conv(channels, channels, kernel_size, stride, 1, track_running_stats),
        _dil_conv(channels, channels, kernel_size, 1, 1, track_running_stats),
    )


class FactorizedReduce(nn.Module):
    """Halves the resolution with two 1x1 stride-2 convolutions, the second shifted by one pixel.

    Each half sees a different pixel grid, so together they cover every input pixel (a single strided
    1x1 convolution would drop three of every four).
    """

    def __init__(self, c_in: int, c_out: int, track_running_stats: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = batch_norm(c_out, track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Padding before the shift keeps both halves at ceil(H/2) also for odd H.
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def make_darts_operation(name: str, channels: int, stride: int, track_running_stats: bool) -> nn.Module | None:
    """Builds one DARTS candidate operation on ``channels`` channels.

    Returns:
        The module, or ``None`` for ``none`` (zero output, left out of mixtures as in
        :func:`applications.nas.spaces.nb201.ops.make_operation`).
    """
    if name == "none":
        return None
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        pool = (nn.MaxPool2d(3, stride=stride, padding=1) if name == "max_pool_3x3"
                else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
        # DARTS normalises pooling in the mixture, so its scale is comparable with the convolutions'.
        return nn.Sequential(pool, batch_norm(channels, track_running_stats))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, track_running_stats)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        return _sep_conv(channels, int(name[-1]), stride, track_running_stats)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return _dil_conv(channels, channels, int(name[-1]), stride, 2, track_running_stats)
    raise ValueError(f"unknown DARTS operation {name!r}")


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
        for to_node in range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE):
            terms: list[torch.Tensor] = []
            for edge, (target, from_node) in enumerate(EDGES):
                if target == to_node:
                    ops: nn.ModuleList = self.edges[edge]  # type: ignore[assignment]
                    terms.extend(weights[edge, k + 1] * op(nodes[from_node]) for k, op in enumerate(ops))
            nodes.append(torch.stack(terms).sum(dim=0))
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal = torch.softmax(self.alpha_normal, dim=-1)
        reduce = torch.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(s1.mean(dim=(2, 3)))

    def split_parameters(self) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
        """The network's own parameter tensors as ``(weights, alphas)`` dicts (no copies)."""
        weights = {name: p for name, p in self.named_parameters() if name not in ALPHA_NAMES}
        return weights, {name: getattr(self, name) for name in ALPHA_NAMES}
