"""The architecture search loop shared by every hypergradient method.

One iteration: ``T`` SGD steps on the weights w (training half), then one Adam step on α with the
hypergradient of the validation loss, computed by the core library:

* ``darts-1st``: ∂_αF only (``FirstOrder``).
* ``darts-2nd``: one virtual SGD step of size ξ = the current weight lr, mixed term by central
  differences (``OneStep(finite_difference=True)``), on the last weight-step batch.
* ``idarts``: ∂_αF − γ ∂²_{αw}f Σ_{k≤K}(I − γH)^k ∂_wF with γ = the current weight lr
  (``StochasticNeumann``), a fresh training batch per Hessian term.
* ``implicit-cg``: (H + δI) v = ∂_wF by conjugate gradient (``CG``), on the last weight-step batch.
* ``implicit-minres``: the same system by ``MINRES``, which does not need H + δI positive definite
  (the supernet's Hessian away from a minimum is not).
* ``random-ws``: the baseline of random search with weight sharing (Li and Talwalkar, 2019): no α.
  Each weight step trains one uniformly sampled cell (a single path through the supernet's shared
  weights); at the end ``rsws_candidates`` uniformly sampled cells are scored with those shared weights
  on the validation half and the best is the result.

The inner objective handed to the library is the training cross-entropy plus the weights' L2 term
(wd/2)‖w‖², the function SGD with weight decay actually minimises, so the implicit function theorem is
applied to the same w*(α) the weight steps approach. Weights and α are the supernet's own parameter
tensors: the library reads them as dicts (it detaches and never mutates them) and only the α tensors'
``.grad`` are written, after the hypergradient has been checked finite. The search space (``--space``)
decides the supernet and how many α tensors it has (see :mod:`applications.nas.spaces.registry`).

Every epoch ends with an atomic checkpoint (model, both optimizers, batch-stream positions, RNG
states, history), so an interrupted search resumes to exactly the result of an uninterrupted one on CPU.

Under ``torchrun`` the search is data-parallel (:mod:`applications.nas.common.distributed`): every batch is
split over the processes, the weight gradients and the hypergradient are averaged over them, and
process 0 writes the log and the checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

import hypergrad as hg
from applications.nas.common.data import BatchStream, ImageSet, load_dataset, split_train_val
from applications.nas.common.distributed import ONE_PROCESS, DataParallel
from applications.nas.common.evaluation import evaluate
from applications.nas.spaces.nb201.genotype import EDGES, OPERATIONS, Cell
from applications.nas.spaces.registry import SPACES, SearchSpace, alpha_probabilities, alpha_to_json, decisive_edges

ALPHA_LR_SCHEDULES = ("constant", "cosine")
METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg", "implicit-minres", "random-ws")
GRADIENT_METHODS = METHODS[:-1]
"""The methods that move α by a hypergradient; ``random-ws`` samples cells instead."""
CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
_CHECKPOINT_VERSION = 2  # 2: the space is in the config, α is a dict of tensors


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
        track_bn_stats: BatchNorm keeps running statistics (else it always normalises by the batch).
        augment: random crop and flip on training batches.
        device: torch device string.
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
    track_bn_stats: bool = False
    augment: bool = False
    device: str = "cpu"

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
        nonnegative = ("w_lr_min", "w_weight_decay", "alpha_weight_decay", "solver_tol", "solver_damping", "w_momentum")
        for name in nonnegative:
            if not getattr(self, name) >= 0 or not math.isfinite(getattr(self, name)):
                raise SearchConfigError(f"{name} = {getattr(self, name)!r}; expected a finite number >= 0")
        if self.alpha_lr_schedule not in ALPHA_LR_SCHEDULES:
            raise SearchConfigError(f"alpha_lr_schedule = {self.alpha_lr_schedule!r}; expected one of "
                                    f"{', '.join(ALPHA_LR_SCHEDULES)}")
        for name in ("alpha_beta1", "alpha_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise SearchConfigError(f"{name} = {getattr(self, name)!r}; expected a number in [0, 1)")
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


@dataclass
class SearchState:
    """What a search has produced so far; also what :func:`run_search` returns."""

    alphas: dict[str, torch.Tensor]
    initial_alphas: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    nonfinite_steps: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0
    epochs_done: int = 0
    selected: dict[str, Any] | None = None
    """``random-ws`` only: the chosen cell (``arch``), its validation accuracy and the candidates scored."""


EpochCallback = Callable[[int, SearchState], None]


def estimator(config: SearchConfig, lr: float) -> object:
    """The ``hypergrad`` method object of ``config.method`` at the current weight learning rate."""
    if config.method == "darts-1st":
        return hg.FirstOrder()
    if config.method == "darts-2nd":
        return hg.OneStep(lr=lr, finite_difference=True)
    if config.method == "idarts":
        return hg.StochasticNeumann(terms=config.neumann_terms, lr=lr, share_batch=config.share_batch)
    if config.method == "implicit-minres":
        return hg.MINRES(max_iter=config.solver_max_iter, tol=config.solver_tol, damping=config.solver_damping)
    return hg.CG(max_iter=config.solver_max_iter, tol=config.solver_tol, damping=config.solver_damping)


@contextlib.contextmanager
def _frozen_bn_statistics(net: nn.Module) -> Iterator[None]:
    """BatchNorm normalises by the batch but leaves running statistics alone.

    The hypergradient evaluates the training loss many times (HVPs, finite differences); only the
    weight steps should move the statistics used at evaluation.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class _Search:
    """The objects of one search, built identically for a fresh start and for a resume."""

    def __init__(self, config: SearchConfig, train: ImageSet, val: ImageSet,
                 parallel: DataParallel = ONE_PROCESS) -> None:
        self.config = config
        self.parallel = parallel
        parallel.check_batch_size(config.batch_size)
        device = parallel.device(config.device)
        torch.manual_seed(config.seed)
        self.net = config.search_space.build_supernet(config, train.in_channels, train.num_classes).to(device)
        self.weights, self.alphas = self.net.split_parameters()
        self.w_opt = torch.optim.SGD(list(self.weights.values()), lr=config.w_lr, momentum=config.w_momentum,
                                     nesterov=config.w_momentum > 0, weight_decay=config.w_weight_decay)
        self.a_opt = torch.optim.Adam(list(self.alphas.values()), lr=config.alpha_lr,
                                      betas=(config.alpha_beta1, config.alpha_beta2),
                                      weight_decay=config.alpha_weight_decay)
        # Separate seeded streams: weight steps, validation batches, and the iDARTS Hessian batches,
        # so each method sees the same weight-step batches whatever it draws for its hypergradient.
        self.train_stream = BatchStream(train, config.batch_size, config.seed + 1, config.augment, device)
        self.val_stream = BatchStream(val, config.batch_size, config.seed + 2, False, device)
        self.hessian_stream = BatchStream(train, config.batch_size, config.seed + 3, config.augment, device)
        self.path_generator = torch.Generator().manual_seed(config.seed + 4)  # random-ws: the sampled cells
        self.device = device

    @property
    def alpha(self) -> torch.Tensor:
        """The architecture parameter of a space that has only one (NAS-Bench-201)."""
        (alpha,) = self.alphas.values()
        return alpha

    def alphas_now(self) -> dict[str, torch.Tensor]:
        """A detached copy of every α, for the state and the log."""
        return {name: alpha.detach().clone() for name, alpha in self.alphas.items()}

    def loss(self, params: dict[str, torch.Tensor], hparams: dict[str, torch.Tensor],
             batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the supernet at (w, α) = (params, hparams): the outer objective F."""
        x, y = batch
        return F.cross_entropy(functional_call(self.net, (params, hparams), (x,)), y)

    def inner_loss(self, params: dict[str, torch.Tensor], hparams: dict[str, torch.Tensor],
                   batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Training cross-entropy plus (wd/2)‖w‖²: the inner objective f."""
        decay = sum((p * p).sum() for p in params.values())
        return self.loss(params, hparams, batch) + 0.5 * self.config.w_weight_decay * decay

    def random_cell(self) -> Cell:
        """A cell drawn uniformly from the 5^6 of NAS-Bench-201 (``random-ws``)."""
        picks = torch.randint(0, len(OPERATIONS), (len(EDGES),), generator=self.path_generator)
        return Cell(tuple(OPERATIONS[int(k)] for k in picks))

    def weight_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        x, y = batch
        sampling = self.config.method == "random-ws"
        logits = self.net.forward_path(x, self.random_cell()) if sampling else self.net(x)
        loss = F.cross_entropy(logits, y)
        params = list(self.weights.values())
        # Gradients of the weights only: α must not collect training-loss gradients here. A sampled
        # path (random-ws) leaves the other operations' weights without a gradient, so SGD skips them.
        grads = torch.autograd.grad(loss, params, allow_unused=sampling)
        # Data-parallel: the global batch's gradient, loss and accuracy (one all-reduce).
        *grads, loss, acc = self.parallel.average([*grads, loss.detach(), (logits.argmax(1) == y).float().mean()])
        for p, g in zip(params, grads):
            p.grad = g
        nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.config.grad_clip)
        self.w_opt.step()
        assert loss is not None and acc is not None
        return float(loss), float(acc)

    def arch_step(self, lr: float, last_batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
        """One α step; returns the library's diagnostics. Raises ``hg.NonFiniteError`` before any update."""
        inner_batch = self.parallel.sharded(self.hessian_stream) if self.config.method == "idarts" else last_batch
        # The library warns when a series or solve grows; the log records those steps (info.diverged)
        # and the progress bar reports them once, instead of a warning per step over the bar.
        with _frozen_bn_statistics(self.net), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = hg.hypergradient(self.loss, self.inner_loss, self.weights, self.alphas,
                                      outer_batch=self.parallel.shard(self.val_stream()), inner_batch=inner_batch,
                                      method=estimator(self.config, lr), reduce=self.parallel.reduce)
        # Checked for every α before any is written: the library raises on this; kept as the app's own guarantee.
        for name, grad in result.grads.items():
            if not torch.isfinite(grad).all():
                raise hg.NonFiniteError(self.config.method, f"the architecture gradient of {name}")
        for name, alpha in self.alphas.items():
            alpha.grad = result.grads[name].detach().to(alpha.dtype)
        self.a_opt.step()
        return result.info

    def state_dict(self, state: SearchState) -> dict[str, Any]:
        return {
            "version": _CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "model": self.net.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "streams": {name: getattr(self, name).state_dict()
                        for name in ("train_stream", "val_stream", "hessian_stream")},
            "path_generator": self.path_generator.get_state(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "initial_alphas": state.initial_alphas,
            "history": state.history,
            "nonfinite_steps": state.nonfinite_steps,
            "wall_time": state.wall_time,
            "epochs_done": state.epochs_done,
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> SearchState:
        self.net.load_state_dict(checkpoint["model"])
        self.w_opt.load_state_dict(checkpoint["w_opt"])
        self.a_opt.load_state_dict(checkpoint["a_opt"])
        for name, stream_state in checkpoint["streams"].items():
            getattr(self, name).load_state_dict(stream_state)
        if "path_generator" in checkpoint:  # absent from checkpoints written before random-ws existed
            self.path_generator.set_state(checkpoint["path_generator"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        random.setstate(checkpoint["rng"]["python"])
        return SearchState(self.alphas_now(), checkpoint["initial_alphas"], checkpoint["history"],
                           checkpoint["nonfinite_steps"], checkpoint["wall_time"], checkpoint["epochs_done"])


@torch.no_grad()
def select_by_weight_sharing(search: _Search, val: ImageSet, candidates: int) -> dict[str, Any]:
    """Random search with weight sharing: the best of ``candidates`` uniformly drawn cells, each scored
    by its validation accuracy on the supernet's shared weights (the whole validation half)."""
    search.net.eval()
    scored: dict[str, float] = {}
    for _ in range(candidates):
        cell = search.random_cell()
        if str(cell) in scored:
            continue
        correct = 0
        for start in range(0, len(val), 256):
            x, y = val.batch(torch.arange(start, min(start + 256, len(val))), search.device)
            correct += int((search.net.forward_path(x, cell).argmax(1) == y).sum())
        scored[str(cell)] = correct / len(val)
    search.net.train()
    best = max(scored, key=lambda arch: scored[arch])
    return {"arch": best, "val_acc": scored[best], "candidates": candidates, "distinct_cells": len(scored),
            "median_candidate_val_acc": float(np.median(list(scored.values())))}


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Writes ``path`` through a temporary file in the same folder and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def load_checkpoint(out_dir: Path) -> dict[str, Any]:
    """The checkpoint of a search folder; raises ``FileNotFoundError``/``ValueError`` with one-line reasons."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path} to resume from (expected the --out folder of a search)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a damaged file
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} is not a search checkpoint of this version")
    return checkpoint


def _epoch_record(epoch: int, lr: float, losses: list[float], accs: list[float], val: tuple[float, float],
                  seconds: float, steps: int, infos: list[Any], skipped: int, space: SearchSpace,
                  alphas: dict[str, torch.Tensor]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "weight_lr": lr,
        "train_loss": float(np.mean(losses)),
        "train_acc": float(np.mean(accs)),
        "val_loss": val[0],
        "val_acc": val[1],
        "seconds": seconds,
        "seconds_per_step": seconds / steps,
        "arch_steps": len(infos),
        "skipped_arch_steps": skipped,
        "alpha_softmax": alpha_to_json(alpha_probabilities(alphas)),
        "decisive_edges": decisive_edges(alphas),
        "arch": str(space.derive(alphas, False)),
    }
    if infos:
        record["hvps_per_step"] = float(np.mean([i.hvps for i in infos]))
        record["solver_iterations"] = float(np.mean([i.iterations for i in infos]))
        residuals = [i.residual_norm for i in infos if not math.isnan(i.residual_norm)]
        if residuals:
            record["residual_norm"] = float(np.mean(residuals))
        converged = [i.converged for i in infos if i.converged is not None]
        if converged:
            record["converged_fraction"] = float(np.mean(converged))
        record["diverged_steps"] = int(sum(bool(i.diverged) for i in infos))
    return record


def run_search(config: SearchConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
               on_epoch_end: EpochCallback | None = None, parallel: DataParallel | None = None) -> SearchState:
    """Runs (or resumes) a search, writing ``checkpoint.pt`` and ``log.jsonl`` into ``out_dir`` each epoch.

    Args:
        config: the search settings (on resume, those stored in the checkpoint are used).
        out_dir: the search folder.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show a tqdm progress bar on stderr.
        on_epoch_end: called with ``(epoch, state)`` after each epoch's checkpoint is on disk.
        parallel: the data-parallel job (default: from the environment, see
            :meth:`DataParallel.from_environment`); only its process 0 writes into ``out_dir``.

    Returns:
        The final :class:`SearchState`.
    """
    out = Path(out_dir)
    checkpoint = load_checkpoint(out) if resume else None
    if checkpoint is not None:
        config = SearchConfig.from_dict(checkpoint["config"])
    parallel = parallel or DataParallel.from_environment(config.device)
    if parallel.is_writer:
        out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.dataset, config.data_dir, config.image_size)
    train, val = split_train_val(dataset.train, config.seed, config.train_subset)
    search = _Search(config, train, val, parallel)
    if checkpoint:
        state = search.load_state_dict(checkpoint)
    else:
        state = SearchState(search.alphas_now(), search.alphas_now())

    steps = search.train_stream.batches_per_pass
    bar = tqdm(total=config.epochs * steps, initial=state.epochs_done * steps, disable=not (progress and parallel.is_writer),
               unit="step", dynamic_ncols=True, desc=f"{config.method}")
    reported_growth = False
    try:
        for epoch in range(state.epochs_done, config.epochs):
            started = time.perf_counter()
            lr = config.weight_lr(epoch)
            for group in search.w_opt.param_groups:
                group["lr"] = lr
            for group in search.a_opt.param_groups:
                group["lr"] = config.arch_lr(epoch)
            losses: list[float] = []
            accs: list[float] = []
            infos: list[Any] = []
            skipped = 0
            for step in range(steps):
                batch = parallel.shard(search.train_stream())
                loss, acc = search.weight_step(batch)
                losses.append(loss)
                accs.append(acc)
                moves_alpha = config.method in GRADIENT_METHODS and epoch >= config.warmup_epochs
                if moves_alpha and (step + 1) % config.inner_steps == 0:
                    try:
                        infos.append(search.arch_step(lr, batch))
                        if infos[-1].diverged and not reported_growth:
                            reported_growth = True
                            bar.write(f"note: the {config.method} solve grew at epoch {epoch + 1}, step {step + 1} "
                                      f"({infos[-1].message or 'diverged'}); such steps are counted in the log "
                                      "as diverged_steps")
                    except hg.NonFiniteError as err:
                        skipped += 1
                        note = {"epoch": epoch + 1, "step": step + 1, "message": str(err).splitlines()[0]}
                        state.nonfinite_steps.append(note)
                        bar.write(f"warning: non-finite hypergradient at epoch {epoch + 1}, step {step + 1}; "
                                  f"α step skipped ({note['message']})")
                elapsed = time.perf_counter() - started
                bar.set_description(f"{config.method} epoch {epoch + 1}/{config.epochs}")
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{np.mean(accs):.3f}",
                                val_acc=f"{state.history[-1]['val_acc']:.3f}" if state.history else "-",
                                s_step=f"{elapsed / (step + 1):.2f}", refresh=False)
                bar.update(1)
            parallel.average_buffers(search.net)
            parallel.check_identical([*search.net.parameters(), *search.net.buffers()], "supernet weights and α")
            val_metrics = evaluate(search.net, val, search.device)
            seconds = time.perf_counter() - started
            state.alphas = search.alphas_now()
            state.history.append(_epoch_record(epoch, lr, losses, accs, val_metrics, seconds, steps, infos,
                                               skipped, config.search_space, state.alphas))
            state.history[-1]["alpha_lr"] = config.arch_lr(epoch)
            state.wall_time += seconds
            state.epochs_done = epoch + 1
            if parallel.is_writer:
                atomic_write_text(out / LOG, "".join(json.dumps(r) + "\n" for r in state.history))
                atomic_write_bytes(out / CHECKPOINT, functools.partial(torch.save, search.state_dict(state)))
            parallel.barrier()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, state)
    finally:
        bar.close()
    if config.method == "random-ws":
        state.selected = select_by_weight_sharing(search, val, config.rsws_candidates)
    return state
