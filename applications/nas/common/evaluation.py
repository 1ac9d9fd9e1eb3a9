"""Loss and accuracy of a network on a whole image set: the supernet after each epoch, a retrained cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from applications.nas.common.data import ImageSet

_EVAL_BATCH = 256


@torch.no_grad()
def evaluate(net: nn.Module, data: ImageSet, device: torch.device | str = "cpu") -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``net`` on all of ``data``, in eval mode.

    The network is put back in training mode afterwards.
    """
    net.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), _EVAL_BATCH):
        x, y = data.batch(torch.arange(start, min(start + _EVAL_BATCH, len(data)), device=data.device), device)
        logits = net(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    net.train()
    return total_loss / len(data), correct / len(data)
