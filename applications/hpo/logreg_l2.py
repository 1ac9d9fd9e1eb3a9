"""``logreg-l2``: logistic regression with one L2 penalty per feature (the HOAG problem).

    inner:  w*(λ) = argmin_w  mean_i CE(W x_i + b, y_i) + ½ Σ_j λ_j ‖W_{:, j}‖²
    outer:  min_λ  mean_{val} CE(W* x + b*, y)

Softmax regression on standardised features, in float64, solved by L-BFGS to a gradient tolerance and
warm-started from the previous outer step. For λ > 0 the problem is strongly convex in W, so the
hypergradient's linear system is well posed and CG is the natural solver (Pedregosa, "Hyperparameter
optimization with approximate gradient", ICML 2016). The bias is not penalised: the one direction of
zero curvature it leaves (adding the same constant to every class's logit) changes no loss, so every
right-hand side of the linear system is orthogonal to it and CG never moves along it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .data import split_dataset
from .inner_solvers import Params
from .task import Batch, ScalarSpace, SoftmaxRegressionTask, quantiles

_LN10 = math.log(10.0)


class LogregL2(SoftmaxRegressionTask):
    """Per-feature L2 logistic regression on breast-cancer or digits.

    Args:
        dataset: ``"breast-cancer"`` (30 features, 2 classes) or ``"digits"`` (64 features,
            10 classes); split into thirds for train / validation / test.
        seed: Seed of the split.
        tol: Inner gradient tolerance (largest absolute entry).
        init_log10_l2: Starting value of every ``log10 λ_j`` for the gradient-based methods.
    """

    name = "logreg-l2"
    datasets = ("breast-cancer", "digits")
    default_cg: dict[str, Any] = {"max_iter": 200, "tol": 1e-10, "damping": 0.0}
    default_neumann: dict[str, Any] = {"terms": 100, "lr": 0.5}
    default_outer_lr = 0.1

    def __init__(
        self,
        dataset: str = "breast-cancer",
        seed: int = 0,
        tol: float = 1e-8,
        init_log10_l2: float = -2.0,
    ) -> None:
        splits = split_dataset(dataset, (None, None, None), seed, torch.float64, standardize=True)
        super().__init__(splits, seed, tol)
        self.dataset = dataset
        self.scalar_space = ScalarSpace("l2", -6.0, 1.0)
        self.init_log10_l2 = init_log10_l2

    def inner_loss(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Mean cross-entropy plus ``½ Σ_j exp(log_l2_j) ‖W_{:, j}‖²``."""
        penalty = (hparams["log_l2"].exp() * params["weight"].pow(2).sum(dim=0)).sum()
        return self.data_loss(params, batch).mean() + 0.5 * penalty

    def init_hparams(self) -> Params:
        d = self.splits.train.x.shape[1]
        start = torch.full((d,), self.init_log10_l2 * _LN10, dtype=torch.float64)
        return {"log_l2": start.requires_grad_(True)}

    def hparams_from_scalar(self, log10_value: float) -> Params:
        d = self.splits.train.x.shape[1]
        return {"log_l2": torch.full((d,), log10_value * _LN10, dtype=torch.float64)}

    def summarize_hparams(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        log10_l2 = hparams["log_l2"].detach() / _LN10
        return {"l2": quantiles(10.0**log10_l2), "log10_l2": [round(float(v), 4) for v in log10_l2]}
