"""Loss and accuracy of a network on a whole image set: the supernet after each epoch, a retrained cell."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from applications.nas.common.data import ImageSet

_EVAL_BATCH = 256


def _batches(net: nn.Module, data: ImageSet, device: torch.device | str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(logits, labels)`` of ``net`` on ``data`` in eval mode, batch by batch; training mode is restored after."""
    net.eval()
    try:
        for start in range(0, len(data), _EVAL_BATCH):
            x, y = data.batch(torch.arange(start, min(start + _EVAL_BATCH, len(data)), device=data.device), device)
            yield net(x), y
    finally:
        net.train()


@torch.no_grad()
def evaluate(net: nn.Module, data: ImageSet, device: torch.device | str = "cpu") -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``net`` on all of ``data``, in eval mode.

    The network is put back in training mode afterwards.
    """
    total_loss, correct = 0.0, 0
    for logits, y in _batches(net, data, device):
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(data), correct / len(data)


@torch.no_grad()
def correct_per_image(net: nn.Module, data: ImageSet, device: torch.device | str = "cpu") -> torch.Tensor:
    """Whether ``net`` classifies each image of ``data`` right (a bool vector on ``data``'s order), in eval mode.

    Two networks scored on the same images give paired outcomes, whose difference has a far smaller
    standard error than two independent accuracies (what perturbation selection's margins use).
    """
    return torch.cat([(logits.argmax(1) == y) for logits, y in _batches(net, data, device)]).cpu()
