"""A deep equilibrium layer, the root problem that ``bench_roots`` times and the condition tests check.

It imports torch alone, so that the tests (``tests/test_conditions.py``, ``tests/test_peers_conditions.py``)
can build it without the benchmarks' own dependencies (jax, jaxopt, torchdeq, pytest-benchmark).
"""

from __future__ import annotations

import torch

DT = torch.float64


class Equilibrium:
    """A deep equilibrium layer z* = tanh(z* Wᵀ + x Uᵀ + b) on a batch of inputs x, with ‖W‖₂ = ``contraction``,
    and the readout loss L = ½‖z* c − t‖². θ = {W, U, b} are the hyperparameters.

    Everything is float64, drawn from a generator seeded with ``seed`` (W, U, b, x, c, t in that order);
    ``scaled_readout`` divides c by √width. ``z`` is the fixed point after ``steps`` iterations from z = 0
    (the error shrinks as contraction^steps).
    """

    def __init__(self, batch: int = 4, width: int = 8, inputs: int = 5, contraction: float = 0.6, seed: int = 2,
                 scaled_readout: bool = False, steps: int = 400) -> None:
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(width, width, generator=g, dtype=DT)
        self.theta = {"W": contraction * W / torch.linalg.matrix_norm(W, 2),
                      "U": torch.randn(width, inputs, generator=g, dtype=DT) / inputs**0.5,
                      "b": 0.1 * torch.randn(width, generator=g, dtype=DT)}
        self.x = torch.randn(batch, inputs, generator=g, dtype=DT)
        self.c = torch.randn(width, generator=g, dtype=DT)
        if scaled_readout:
            self.c = self.c / width**0.5
        self.t = torch.randn(batch, generator=g, dtype=DT)
        self.z = self.forward(self.theta, steps).detach()

    @staticmethod
    def T(p: dict, h: dict, x: torch.Tensor) -> dict:
        return {"z": torch.tanh(p["z"] @ h["W"].T + x @ h["U"].T + h["b"])}

    def outer(self, p: dict, h: dict, batch: object = None) -> torch.Tensor:
        return 0.5 * ((p["z"] @ self.c - self.t) ** 2).sum()

    def forward(self, theta: dict, steps: int) -> torch.Tensor:
        z = torch.zeros(self.x.shape[0], theta["W"].shape[0], dtype=DT)
        for _ in range(steps):
            z = self.T({"z": z}, theta, self.x)["z"]
        return z

    def unrolled_hypergradient(self, steps: int = 300) -> dict:
        """Autograd through ``steps`` forward iterations from z = 0: error O(steps · contraction^steps)."""
        theta = {k: v.clone().requires_grad_() for k, v in self.theta.items()}
        loss = self.outer({"z": self.forward(theta, steps)}, theta)
        return dict(zip(theta, torch.autograd.grad(loss, list(theta.values()))))
