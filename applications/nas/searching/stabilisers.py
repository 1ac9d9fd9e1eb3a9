"""Stabilisers of a differentiable search that compose with every hypergradient method.

Each one changes only the outer objective or the map from α to the supernet's mixing weights, so the
core library sees an ordinary bilevel problem and ``darts-1st``, ``darts-2nd``, ``idarts`` and
``implicit-cg``/``implicit-minres`` take them alike:

* **β-decay** (Ye et al., "β-DARTS: Beta-Decay Regularization for Differentiable Architecture
  Search", CVPR 2022): the outer loss gains λ(t)·mean_e logsumexp(α_e), whose gradient
  λ·softmax(α_e)/|E| per edge shrinks the activated α and keeps their spread small, so no operation
  runs away early (the skip-connection collapse). λ grows linearly over the search.
* **Dirichlet mixing** (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021): the
  mixing weights of an edge are a sample θ ~ Dir(elu(α_e) + 1) instead of softmax(α_e), differentiated
  by the pathwise (implicit reparameterisation) gradient of the Gamma draws behind it. One sample is
  held fixed within one hypergradient, so that the inner and outer losses, every Hessian-vector
  product and the mixed product see the same supernet. The outer loss gains DrNAS's regulariser on the
  concentration, c·KL(Dir(elu(α_e)+1) ‖ Dir(1)), averaged over edges.

The perturbation-based choice of the final cell (DARTS-PT) works on the trained supernet after the
search and lives in :mod:`applications.nas.searching.selection`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence


def beta_decay_penalty(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """mean over all edges (rows of every α tensor) of logsumexp(α_e): β-DARTS's regulariser.

    Its gradient with respect to the row α_e is softmax(α_e) / |E|, |E| the number of edges.
    """
    rows = torch.cat([alpha.reshape(-1, alpha.shape[-1]) for alpha in alphas.values()])
    return torch.logsumexp(rows, dim=-1).mean()


def beta_decay_weight(strength: float, epoch: int, epochs: int) -> float:
    """λ in ``epoch`` (0-based): linear from 0 at the first epoch towards ``strength`` at the end.

    β-DARTS uses λ = 50·epoch/100 over its 100 epochs; ``strength`` = 50 stretches the same ramp over
    the search's own epochs.
    """
    return strength * epoch / epochs


def dirichlet_concentration(alpha: torch.Tensor) -> torch.Tensor:
    """DrNAS's concentration elu(α) + 1: positive, and equal to 1 + α for α ≥ 0."""
    return F.elu(alpha) + 1


def dirichlet_kl_penalty(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """mean over edges of KL(Dir(elu(α_e) + 1) ‖ Dir(1, ..., 1)): DrNAS's regulariser on the concentration."""
    rows = torch.cat([alpha.reshape(-1, alpha.shape[-1]) for alpha in alphas.values()])
    concentration = dirichlet_concentration(rows)
    return kl_divergence(Dirichlet(concentration), Dirichlet(torch.ones_like(concentration))).mean()


class DirichletMixing:
    """Mixing weights θ_e ~ Dir(elu(α_e) + 1), one held sample per α tensor, pathwise-differentiable.

    A Dirichlet sample is θ = g / Σ g with g_k ~ Gamma(a_k, 1), a = elu(α) + 1. :meth:`resample` draws
    g at the current α and holds it; calling the object then returns θ whose derivative with respect
    to α is the implicit reparameterisation gradient dg_k/da_k = −(∂F_a/∂a)/(∂F_a/∂g) (F_a the Gamma
    CDF), as ``torch._standard_gamma``'s own backward computes it. It is written as a first-order
    surrogate, g + (a − stop(a))·stop(dg/da), whose value is exactly g and whose first derivative in α is
    exact, so it runs under every ``torch.func`` transform the library applies (HVPs in w, one mixed
    product in α). Second derivatives in α, which no estimator takes, are not those of the sample.

    In eval mode (:attr:`expected` true) the weights are the Dirichlet mean a / Σ a, deterministic.

    Args:
        generator: the random stream of the Gamma draws (seeded by the search).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator
        self.samples: dict[str, torch.Tensor] = {}
        self.expected = False

    def resample(self, alphas: Mapping[str, torch.Tensor]) -> None:
        """Draws and holds a new Gamma sample for every α tensor, at its current value."""
        with torch.no_grad():
            for name, alpha in alphas.items():
                concentration = dirichlet_concentration(alpha.detach())
                draw = torch._standard_gamma(concentration, generator=self.generator)
                # A Gamma draw with a small concentration can underflow to 0; keep θ = g / Σg defined.
                self.samples[name] = draw.clamp_min(torch.finfo(draw.dtype).tiny)

    def __call__(self, name: str, alpha: torch.Tensor) -> torch.Tensor:
        concentration = dirichlet_concentration(alpha)
        if self.expected:
            return concentration / concentration.sum(dim=-1, keepdim=True)
        if name not in self.samples:
            raise RuntimeError(f"no Dirichlet sample held for {name!r}: call resample() before the forward pass")
        draw = self.samples[name]
        held = concentration.detach()
        slope = torch._standard_gamma_grad(held, draw)
        surrogate = draw + (concentration - held) * slope
        return surrogate / surrogate.sum(dim=-1, keepdim=True)
