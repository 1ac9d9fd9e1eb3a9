"""The settings of a search (:class:`SearchConfig`, checked when built) and the methods it can run."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from applications.nas.spaces.registry import SPACES, SearchSpace

ALPHA_LR_SCHEDULES = ("constant", "cosine")
SELECTIONS = ("argmax", "pt")
"""How the final cell is chosen: the largest α per edge, or perturbation-based selection (DARTS-PT)."""
PT_TIES = ("drop", "parametric")
"""How perturbation selection decides a near tie: the largest drop, or the convolution with the largest drop."""
METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg", "implicit-minres", "random-ws", "fixed-alpha")
GRADIENT_METHODS = METHODS[:-2]
"""The methods that move α by a hypergradient; ``random-ws`` samples cells instead, and ``fixed-alpha``
trains the supernet at its initial, near-uniform α (DARTS-PT's "fix-α", for ``selection="pt"``)."""


class SearchConfigError(ValueError):
    """A search setting out of range; the message names the setting and what it accepts."""


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search. Defaults are the NAS-Bench-201 / iDARTS paper settings.

    Attributes:
        space: the search space, a key of :data:`applications.nas.spaces.registry.SPACES`.
        method: one of :data:`METHODS`.
        dataset, data_dir, image_size, train_subset: see :func:`applications.nas.common.data.load_dataset`.
        channels: C of the supernet.
        cells_per_stage: N, cells per stage of the NAS-Bench-201 supernet.
        layers: L, cells of the DARTS supernet (DARTS CIFAR-10 search: 8).
        epochs, batch_size, seed: as usual; the seed fixes initialisation, split and batch order.
        w_lr, w_lr_min, w_momentum, w_weight_decay, grad_clip: weight SGD (Nesterov), cosine lr per epoch.
        alpha_lr, alpha_beta1, alpha_beta2, alpha_weight_decay: the Adam optimizer of α.
        alpha_lr_schedule: ``constant`` (the paper) or ``cosine`` (from ``alpha_lr`` at epoch 0 towards 0,
            one value per epoch, so that α settles before the cell is derived).
        inner_steps: T, weight steps per architecture step.
        warmup_epochs: epochs of weight steps only, before α starts to move (the paper: 0).
        rsws_candidates: cells that ``random-ws`` samples and scores at the end of its training.
        neumann_terms: K, Hessian terms of the iDARTS series (K HVPs).
        share_batch: iDARTS evaluates the mixed product on its last Hessian term's batch (one graph fewer
            per step; see ``hg.StochasticNeumann``).
        solver_max_iter, solver_tol, solver_damping: the Krylov solve of ``implicit-cg`` and ``implicit-minres``.
        beta_decay: β-DARTS's regulariser strength: the outer loss gains λ(t)·mean_e logsumexp(α_e), λ ramped
            linearly from 0 towards ``beta_decay`` over the epochs (0 = off; β-DARTS: 50).
        dirichlet: DrNAS's mixing weights θ_e ~ Dir(elu(α_e) + 1), one sample held per step (else softmax(α_e)).
        dirichlet_kl: with ``dirichlet``, the weight of DrNAS's KL(Dir(elu(α)+1) ‖ Dir(1)) in the outer loss.
        selection: ``argmax`` (the largest α per edge) or ``pt`` (perturbation-based: per edge, the
            operation whose removal costs the supernet the most validation accuracy; both cells are reported).
        pt_tune_steps: ``pt``: weight steps of fine-tuning after each edge is decided.
        pt_val_images: ``pt``: score the masked supernets on the first this many validation images (all if None).
        pt_max_param_free: ``pt``: at most this many edges of the cell take a parameter-free operation (none,
            skip_connect, avg_pool_3x3); later edges choose among the others (None: no limit).
        pt_ties: ``pt``: how a near tie is decided (drops within two paired standard errors of the largest):
            ``drop`` (the largest drop) or ``parametric`` (the convolution with the largest drop, where the tie
            holds one).
        track_bn_stats: BatchNorm keeps running statistics (else it always normalises by the batch).
        augment: random crop and flip on the batches of both halves (weights' and α's), as DARTS and
            NAS-Bench-201 augment their search data.
        device: torch device string.
        tf32: TF32 matrix products and convolutions on GPUs (off: full float32, see
            :mod:`applications.nas.common.backend`).
        deterministic: deterministic GPU kernels (cuDNN, cuBLAS and the rest), so a search repeats bit for bit.
        bn_sync: under torchrun, BatchNorm normalises by the statistics of the global batch, so that P
            processes compute the one-process search (else each process uses its own slice's statistics).
    """

    space: str = "nb201"
    method: str = "idarts"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    image_size: int | None = None
    train_subset: int | None = None
    channels: int = 16
    cells_per_stage: int = 5
    layers: int = 8
    epochs: int = 50
    batch_size: int = 64
    seed: int = 0
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 5e-4
    grad_clip: float = 5.0
    alpha_lr: float = 3e-4
    alpha_beta1: float = 0.5
    alpha_beta2: float = 0.999
    alpha_weight_decay: float = 1e-3
    alpha_lr_schedule: str = "constant"
    inner_steps: int = 1
    warmup_epochs: int = 0
    rsws_candidates: int = 100
    neumann_terms: int = 2
    share_batch: bool = False
    solver_max_iter: int = 5
    solver_tol: float = 1e-2
    solver_damping: float = 0.1
    beta_decay: float = 0.0
    dirichlet: bool = False
    dirichlet_kl: float = 1e-3
    selection: str = "argmax"
    pt_tune_steps: int = 50
    pt_val_images: int | None = None
    pt_max_param_free: int | None = None
    pt_ties: str = "drop"
    track_bn_stats: bool = False
    augment: bool = False
    device: str = "cpu"
    tf32: bool = False
    deterministic: bool = False
    bn_sync: bool = True

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise SearchConfigError(f"space {self.space!r} is unknown; expected one of {', '.join(SPACES)}")
        if self.method not in METHODS:
            raise SearchConfigError(f"method {self.method!r} is unknown; expected one of {', '.join(METHODS)}")
        positive_ints = ("channels", "cells_per_stage", "layers", "epochs", "batch_size", "inner_steps", "solver_max_iter",
                         "rsws_candidates")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SearchConfigError(f"{name} = {value!r}; expected an integer >= 1")
        if self.method == "random-ws" and self.space != "nb201":
            raise SearchConfigError(f"method random-ws samples NAS-Bench-201 cells; it does not run in --space {self.space}")
        if self.layers < 3:
            raise SearchConfigError(f"layers = {self.layers}; expected an integer >= 3 (a DARTS network needs "
                                    "a normal cell and two reduction cells)")
        if not isinstance(self.neumann_terms, int) or self.neumann_terms < 0:
            raise SearchConfigError(f"neumann_terms = {self.neumann_terms!r}; expected an integer >= 0")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise SearchConfigError(f"warmup_epochs = {self.warmup_epochs!r}; expected an integer in 0..{self.epochs - 1} "
                                    f"(fewer than the {self.epochs} epochs, so that α moves at all)")
        for name in ("w_lr", "alpha_lr", "grad_clip"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise SearchConfigError(f"{name} = {getattr(self, name)!r}; expected a finite number > 0")
        nonnegative = ("w_lr_min", "w_weight_decay", "alpha_weight_decay", "solver_tol", "solver_damping", "w_momentum",
                       "beta_decay", "dirichlet_kl")
        for name in nonnegative:
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise SearchConfigError(f"{name} = {getattr(self, name)!r}; expected a finite number >= 0")
        if self.alpha_lr_schedule not in ALPHA_LR_SCHEDULES:
            raise SearchConfigError(f"alpha_lr_schedule = {self.alpha_lr_schedule!r}; expected one of "
                                    f"{', '.join(ALPHA_LR_SCHEDULES)}")
        for name in ("alpha_beta1", "alpha_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise SearchConfigError(f"{name} = {getattr(self, name)!r}; expected a number in [0, 1)")
        if self.selection not in SELECTIONS:
            raise SearchConfigError(f"selection = {self.selection!r}; expected one of {', '.join(SELECTIONS)}")
        if self.selection == "pt" and (self.space != "nb201" or self.method == "random-ws"):
            raise SearchConfigError("selection pt chooses NAS-Bench-201 cells from a trained α-supernet; expected "
                                    f"--space nb201 and a gradient method, got --space {self.space} --method {self.method}")
        if not isinstance(self.pt_tune_steps, int) or self.pt_tune_steps < 0:
            raise SearchConfigError(f"pt_tune_steps = {self.pt_tune_steps!r}; expected an integer >= 0")
        if self.pt_val_images is not None and (not isinstance(self.pt_val_images, int) or self.pt_val_images < 1):
            raise SearchConfigError(f"pt_val_images = {self.pt_val_images!r}; expected an integer >= 1 (or None: all)")
        if self.pt_max_param_free is not None and (not isinstance(self.pt_max_param_free, int)
                                                   or not 0 <= self.pt_max_param_free <= 6):
            raise SearchConfigError(f"pt_max_param_free = {self.pt_max_param_free!r}; expected an integer in 0..6 "
                                    "(or None: no limit)")
        if self.pt_ties not in PT_TIES:
            raise SearchConfigError(f"pt_ties = {self.pt_ties!r}; expected one of {', '.join(PT_TIES)}")
        if self.image_size is not None and self.image_size < 4:
            raise SearchConfigError(f"image_size = {self.image_size}; expected at least 4 pixels")

    @property
    def search_space(self) -> SearchSpace:
        return SPACES[self.space]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def weight_lr(self, epoch: int) -> float:
        """Cosine schedule from ``w_lr`` at epoch 0 towards ``w_lr_min`` (one value per epoch)."""
        return self.w_lr_min + 0.5 * (self.w_lr - self.w_lr_min) * (1 + math.cos(math.pi * epoch / self.epochs))

    def arch_lr(self, epoch: int) -> float:
        """α's learning rate in ``epoch``: ``alpha_lr``, or its cosine schedule towards 0."""
        if self.alpha_lr_schedule == "constant":
            return self.alpha_lr
        return 0.5 * self.alpha_lr * (1 + math.cos(math.pi * epoch / self.epochs))
