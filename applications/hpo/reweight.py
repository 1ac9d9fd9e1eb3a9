"""``reweight``: one weight per training example, learnt from a small clean validation set.

    inner:  w*(u) = argmin_w  (1/n) Σ_i σ(u_i) CE(W x_i + b, ỹ_i) + ½ λ₀ ‖W‖²
    outer:  min_u  mean_{val} CE(W* x + b*, y)

A share of the training labels ỹ is flipped to another class; the validation labels are clean. Example
weights σ(u_i) ∈ (0, 1) are tuned by implicit gradients (the idea of Ren et al., "Learning to reweight
examples for robust deep learning", ICML 2018, solved here exactly on a convex model). The model is
softmax regression in float64 with a fixed L2 penalty λ₀, so the inner problem is strongly convex in W,
solved by L-BFGS to a tolerance and warm-started; the hypergradient's linear system is solved by CG.
Success is measured by how many of the flipped examples end up with the smallest weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from .data import Split, Splits, flip_labels, split_dataset
from .inner_solvers import Params
from .task import Batch, SoftmaxRegressionTask, quantiles

_SIZES = {"mnist5k": (2000, 200, None), "digits": (1000, 100, None)}


def flip_detection(weights: Tensor, flipped: Tensor) -> dict[str, float]:
    """How well low example weights single out the flipped labels.

    Args:
        weights: One weight per training example.
        flipped: Boolean mask of the examples whose label was flipped.

    Returns:
        ``precision_at_k``: share of flipped examples among the ``k`` lowest weights, ``k`` the number
        of flipped examples (the chance level is the flip fraction); ``auc``: probability that a
        random flipped example has a lower weight than a random clean one (ties count one half;
        chance is 0.5).
    """
    k = int(flipped.sum())
    lowest = torch.argsort(weights, stable=True)[:k]
    precision = float(flipped[lowest].double().mean()) if k else float("nan")
    # Mann-Whitney U statistic from average ranks, so tied weights count one half.
    ranks = torch.as_tensor(rankdata(weights.detach().double().numpy()), dtype=torch.float64)
    n_clean = flipped.numel() - k
    u_clean_above = ranks[~flipped].sum() - n_clean * (n_clean + 1) / 2
    auc = float(u_clean_above / (k * n_clean)) if k and n_clean else float("nan")
    return {"precision_at_k": precision, "auc": auc, "n_flipped": k}


class Reweight(SoftmaxRegressionTask):
    """Per-example weights of noisy-label softmax regression on MNIST-5k or digits.

    Args:
        dataset: ``"digits"`` (1,000 train / 100 validation / 697 test) or ``"mnist5k"``
            (2,000 / 200 / 2,800).
        seed: Seed of the split and of the label flips.
        flip_fraction: Share of training labels replaced by another class (default 0.4).
        l2: Fixed L2 penalty λ₀ on the weights.
        tol: Inner gradient tolerance (largest absolute entry).
        train_split: Override of the noisy training split (tests plant their own flips).
        flipped: Mask of flipped examples of ``train_split``; required with it.
    """

    name = "reweight"
    datasets = ("digits", "mnist5k")
    default_cg: dict[str, Any] = {"max_iter": 100, "tol": 1e-10, "damping": 0.0}
    default_neumann: dict[str, Any] = {"terms": 50, "lr": 0.5}
    default_outer_lr = 0.5

    def __init__(
        self,
        dataset: str = "digits",
        seed: int = 0,
        flip_fraction: float = 0.4,
        l2: float = 1e-3,
        tol: float = 1e-8,
        splits: Splits | None = None,
        flipped: Tensor | None = None,
    ) -> None:
        if splits is None:
            clean = split_dataset(dataset, _SIZES[dataset], seed, torch.float64)
            noisy, flipped = flip_labels(clean.train.y, flip_fraction, clean.n_classes, seed)
            splits = Splits(Split(clean.train.x, noisy), clean.val, clean.test, clean.n_classes)
        elif flipped is None:
            raise ValueError("a custom split needs its mask of flipped examples")
        super().__init__(splits, seed, tol)
        self.dataset = dataset
        self.flipped = flipped
        self.l2 = l2
        # Example weights have no meaningful shared value: grid search and TPE do not apply.
        self.scalar_space = None

    def inner_loss(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Example-weighted mean cross-entropy plus ``½ λ₀ ‖W‖²``."""
        weights = torch.sigmoid(hparams["logit"][batch.index])
        weighted = (weights * self.data_loss(params, batch)).mean()
        return weighted + 0.5 * self.l2 * params["weight"].pow(2).sum()

    def init_hparams(self) -> Params:
        """Every example starts at weight σ(0) = ½, where the weight is most sensitive."""
        n = len(self.splits.train)
        return {"logit": torch.zeros(n, dtype=torch.float64, requires_grad=True)}

    def random_hparams(self, rng: np.random.Generator) -> Params:
        """Weights drawn uniformly in (0, 1), independently per example."""
        weights = rng.uniform(1e-6, 1.0 - 1e-6, size=len(self.splits.train))
        return {"logit": torch.logit(torch.as_tensor(weights, dtype=torch.float64))}

    def summarize_hparams(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        weights = torch.sigmoid(hparams["logit"].detach())
        return {
            "weight_clean": quantiles(weights[~self.flipped]),
            "weight_flipped": quantiles(weights[self.flipped]),
        }

    def task_metrics(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        return flip_detection(torch.sigmoid(hparams["logit"].detach()), self.flipped)
