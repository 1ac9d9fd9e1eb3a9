"""How a supernet turns its architecture parameters α into the mixing weights of its edges.

A supernet calls ``net.mixing(name, alpha)`` for each of its α tensors (``name`` is the parameter's
name) and weights each edge's operations by the rows of the result. The default is DARTS's
softmax(α); a search may put another map there (the Dirichlet samples of
:class:`applications.nas.searching.stabilisers.DirichletMixing`, or fixed weights while the final cell
is chosen by perturbation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Mixing = Callable[[str, torch.Tensor], torch.Tensor]
"""``(name, alpha) -> weights`` of the same shape, each row the mixture of one edge."""


def softmax_mixing(name: str, alpha: torch.Tensor) -> torch.Tensor:
    """DARTS's mixing weights: softmax(α_e) per edge (``name`` is unused)."""
    return torch.softmax(alpha, dim=-1)
