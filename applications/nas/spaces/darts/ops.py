"""The candidate operations of the DARTS space (``make_darts_operation``) and ``FactorizedReduce``.

As in DARTS, every BatchNorm has no affine parameters during search (see
:func:`applications.nas.spaces.nb201.ops.batch_norm`); the evaluation network builds the same operations
with affine BatchNorm.
Unlike DARTS's code, ``FactorizedReduce`` also accepts odd resolutions (e.g. 7x7 after one reduction of
a 14x14 image): its shifted half is zero-padded, which changes nothing on even sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from applications.nas.spaces.nb201.ops import batch_norm


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
