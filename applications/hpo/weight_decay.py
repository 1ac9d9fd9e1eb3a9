"""``weight-decay``: an MLP on MNIST-5k with one weight-decay coefficient per weight.

    inner:  w*(λ) ≈ SGD on  mean_batch CE(mlp_w(x), y) + ½ Σ_p λ_p w_p²
    outer:  min_λ  mean_{val} CE(mlp_{w*}(x), y)

Tens of thousands of hyperparameters, one per network parameter, tuned online as Lorraine, Vicol &
Duvenaud do ("Optimizing millions of hyperparameters by implicit differentiation", AISTATS 2020): a few
hundred SGD steps on the weights, then one hypergradient step on λ, the Hessian system solved
approximately by a truncated Neumann series (or CG) on a training mini-batch. The training split is
kept small (2,000 images) so that the network overfits and weight decay matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .data import split_dataset
from .inner_solvers import Params, SGDSolver
from .task import Batch, ScalarSpace, Task, batch_sampler, quantiles

_LN10 = math.log(10.0)


class WeightDecay(Task):
    """Per-parameter weight decay of a one-hidden-layer ReLU MLP on MNIST-5k.

    Args:
        dataset: Only ``"mnist5k"``; split 2,000 / 1,000 / 2,000 for train / validation / test.
        seed: Seed of the split, the initial weights and the mini-batches.
        hidden: Width of the hidden layer (50 gives 39,760 weights, hence as many hyperparameters).
        inner_steps: SGD steps between two outer steps.
        trial_steps: SGD steps of one black-box trial, trained from the initial weights.
        lr: SGD learning rate (momentum 0.9).
        batch_size: Mini-batch size of training and of the hypergradient's Hessian products.
        init_log10_wd: Starting value of every ``log10 λ_p`` for the gradient-based methods.
    """

    name = "weight-decay"
    datasets = ("mnist5k",)
    default_cg: dict[str, Any] = {"max_iter": 20, "tol": 1e-6, "damping": 1e-2}
    default_neumann: dict[str, Any] = {"terms": 20, "lr": 0.05}
    default_outer_lr = 0.1

    def __init__(
        self,
        dataset: str = "mnist5k",
        seed: int = 0,
        hidden: int = 50,
        inner_steps: int = 100,
        trial_steps: int = 1500,
        lr: float = 0.05,
        batch_size: int = 128,
        init_log10_wd: float = -4.0,
    ) -> None:
        splits = split_dataset(dataset, (2000, 1000, 2000), seed, torch.float32)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = nn.Sequential(
                nn.Linear(splits.train.x.shape[1], hidden, dtype=torch.float32),
                nn.ReLU(),
                nn.Linear(hidden, splits.n_classes, dtype=torch.float32),
            )
        super().__init__(splits, model, seed)
        self.dataset = dataset
        self.batch_size = batch_size
        self.inner_solver = SGDSolver(steps=inner_steps, lr=lr)
        self.trial_solver = SGDSolver(steps=trial_steps, lr=lr)
        self.scalar_space = ScalarSpace("weight_decay", -6.0, -1.0)
        self.init_log10_wd = init_log10_wd

    def inner_loss(
        self, params: Mapping[str, Tensor], hparams: Mapping[str, Tensor], batch: Batch
    ) -> Tensor:
        """Mean cross-entropy plus ``½ Σ_p exp(log_wd_p) w_p²`` over every parameter."""
        penalty = sum((hparams[k].exp() * w.pow(2)).sum() for k, w in params.items())
        return self.data_loss(params, batch).mean() + 0.5 * penalty

    def train_batches(self) -> Callable[[], Batch]:
        return batch_sampler(self.splits.train, self.batch_size, self.generator)

    def hessian_batch(self) -> Callable[[], Batch]:
        """A fresh training mini-batch (of 4 training batches' size) per Hessian term."""
        return batch_sampler(self.splits.train, 4 * self.batch_size, self.generator)

    def _constant(self, log_value: float) -> Params:
        return {k: torch.full_like(v, log_value) for k, v in self.model.named_parameters()}

    def init_hparams(self) -> Params:
        return {
            k: v.requires_grad_(True) for k, v in self._constant(self.init_log10_wd * _LN10).items()
        }

    def hparams_from_scalar(self, log10_value: float) -> Params:
        return self._constant(log10_value * _LN10)

    def summarize_hparams(self, hparams: Mapping[str, Tensor]) -> dict[str, Any]:
        return {k: quantiles(v.detach().exp()) for k, v in hparams.items()}
