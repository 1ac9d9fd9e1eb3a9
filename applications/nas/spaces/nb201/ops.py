"""The candidate operations of NAS-Bench-201 and the residual block that halves the resolution.

Every BatchNorm here has no affine parameters: during search, a learnable scale would let the network
rescale an edge's output and so blur what α says about that edge (NAS-Bench-201 and DARTS search with
``affine=False`` for the same reason). Whether BatchNorm tracks running statistics is a choice passed
down from the search configuration.
"""

from __future__ import annotations

import torch
from torch import nn


def batch_norm(channels: int, track_running_stats: bool) -> nn.BatchNorm2d:
    """BatchNorm without affine parameters, as every BatchNorm of the search space."""
    return nn.BatchNorm2d(channels, affine=False, track_running_stats=track_running_stats)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution (no bias), BatchNorm: the ``nor_conv_kxk`` operations."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, track_running_stats: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            batch_norm(c_out, track_running_stats),
        )


def make_operation(name: str, channels: int, track_running_stats: bool) -> nn.Module | None:
    """Builds one candidate operation on ``channels`` channels, stride 1.

    Returns:
        The module, or ``None`` for ``none``: its output is zero, so a mixture skips it instead of
        computing ``0 * x`` (the mixture's value and gradients are unchanged).
    """
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, track_running_stats)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, track_running_stats)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown operation {name!r}")


class ResidualReduction(nn.Module):
    """The residual block between stages: stride 2, ``c_in -> c_out`` channels.

    Two ReLU-conv3x3-BN layers on one branch, average pooling and a 1x1 convolution on the shortcut.
    """

    def __init__(self, c_in: int, c_out: int, track_running_stats: bool) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, track_running_stats)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, track_running_stats)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
