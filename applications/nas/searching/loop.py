"""The architecture search loop shared by every hypergradient method.

One iteration: ``T`` SGD steps on the weights w (training half), then one Adam step on α with the
hypergradient of the validation loss, computed by the core library with the estimator of the method
(:mod:`applications.nas.searching.estimators`; the settings are a
:class:`~applications.nas.searching.config.SearchConfig`):

* ``darts-1st``: ∂_αF only (``FirstOrder``).
* ``darts-2nd``: one virtual SGD step of size ξ = the current weight lr, mixed term by central
  differences (``OneStep(finite_difference=True)``), on the last weight-step batch.
* ``idarts``: ∂_αF − γ ∂²_{αw}f Σ_{k≤K}(I − γH)^k ∂_wF with γ = the current weight lr
  (``StochasticNeumann``), a fresh training batch per Hessian term.
* ``implicit-cg``: (H + δI) v = ∂_wF by conjugate gradient (``CG``), on the last weight-step batch.
* ``implicit-minres``: the same system by ``MINRES``, which does not need H + δI positive definite
  (the supernet's Hessian away from a minimum is not).
* ``fixed-alpha``: weight steps only, α left at its near-uniform start (DARTS-PT's "fix-α" baseline: the cell
  is then chosen by perturbation, ``selection="pt"``, not by α).
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
states, history), and so, optionally, does every N-th step (``checkpoint_every``), so an interrupted
search resumes to exactly the result of an uninterrupted one on CPU. An interruption (Ctrl-C, SIGTERM, a
lost process of the job) stops it with :class:`SearchInterrupted`, whose message names that checkpoint.
It holds tensors and plain values only and is read with ``torch.load(weights_only=True)``
(:mod:`applications.checkpoints`), so a checkpoint handed over by someone else runs no code.

Under ``torchrun`` the search is data-parallel (:mod:`applications.nas.common.distributed`): every batch is
split over the processes, the weight gradients and the hypergradient are averaged over them, and
process 0 writes the log and the checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

import hypergrad as hg
from applications import checkpoints
from applications.nas.common.backend import configure as configure_backend
from applications.nas.common.data import BatchStream, ImageSet, load_dataset, split_train_val
from applications.nas.common.distributed import ONE_PROCESS, DataParallel, synchronise_batch_norm
from applications.nas.common.evaluation import correct_per_image, evaluate
from applications.nas.common.files import atomic_write_bytes, atomic_write_text
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig, SearchConfigError
from applications.nas.searching.estimators import estimator
from applications.nas.searching.selection import clear_decisions, perturbation_select
from applications.nas.searching.stabilisers import (
    DirichletMixing,
    beta_decay_penalty,
    beta_decay_weight,
    dirichlet_kl_penalty,
)
from applications.nas.spaces.nb201.genotype import EDGES, OPERATIONS, PARAMETER_FREE, Cell
from applications.nas.spaces.registry import SearchSpace, alpha_probabilities, alpha_to_json, decisive_edges

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
CHECKPOINT_KIND = "nas-search"
_CHECKPOINT_VERSION = 3  # 2: the space is in the config, α is a dict of tensors; 3: tensors and plain values only
READ_EVERY = 20
"""Weight steps between host reads of the training loss and accuracy (each read waits for the device)."""


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
    perturbation: dict[str, Any] | None = None
    """``selection=pt`` only: the cell chosen by perturbation (``arch``) and the record of each edge's decision."""
    epoch_progress: dict[str, Any] | None = None
    """Within an epoch (a checkpoint every N steps): the steps done and their figures so far, else ``None``."""


class SearchInterrupted(RuntimeError):
    """The search stopped before its end (a signal, or another process of the job lost); the message says
    where, and which checkpoint is intact to continue from."""


EpochCallback = Callable[[int, SearchState], None]


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
        self.net = config.search_space.build_supernet(config, train.in_channels, train.num_classes)
        if parallel.active and config.bn_sync:
            synchronise_batch_norm(self.net)
        self.net.to(device)
        self.weights, self.alphas = self.net.split_parameters()
        self.w_opt = torch.optim.SGD(list(self.weights.values()), lr=config.w_lr, momentum=config.w_momentum,
                                     nesterov=config.w_momentum > 0, weight_decay=config.w_weight_decay,
                                     foreach=True)
        self.a_opt = torch.optim.Adam(list(self.alphas.values()), lr=config.alpha_lr,
                                      betas=(config.alpha_beta1, config.alpha_beta2),
                                      weight_decay=config.alpha_weight_decay)
        # Separate seeded streams: weight steps, validation batches, and the iDARTS Hessian batches,
        # so each method sees the same weight-step batches whatever it draws for its hypergradient.
        # The halves go to the device once; the weight and Hessian streams share the training half there.
        self.train, self.val = train.to(device), val.to(device)
        self.train_stream = BatchStream(self.train, config.batch_size, config.seed + 1, config.augment, device)
        self.val_stream = BatchStream(self.val, config.batch_size, config.seed + 2, config.augment, device)
        self.hessian_stream = BatchStream(self.train, config.batch_size, config.seed + 3, config.augment, device)
        self.path_generator = torch.Generator().manual_seed(config.seed + 4)  # random-ws: the sampled cells
        self.device = device
        # DrNAS: the Gamma draws behind the Dirichlet mixing weights, a stream of their own.
        self.dirichlet = DirichletMixing(torch.Generator(device).manual_seed(config.seed + 5)) if config.dirichlet else None
        if self.dirichlet is not None:
            self.net.mixing = self.dirichlet
        self.beta_weight = 0.0
        """λ of the β-decay term in the current epoch (:func:`beta_decay_weight`)."""
        # The inner objective f: training cross-entropy plus (wd/2)‖w‖², whose products the library
        # takes with the L2 term added analytically.
        self.inner_loss = hg.WeightDecay(self.loss, config.w_weight_decay)

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

    def outer_loss(self, params: dict[str, torch.Tensor], hparams: dict[str, torch.Tensor],
                   batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The outer objective F: validation cross-entropy plus the stabilisers' terms on α, if any."""
        loss = self.loss(params, hparams, batch)
        if self.config.beta_decay > 0:
            loss = loss + self.beta_weight * beta_decay_penalty(hparams)
        if self.dirichlet is not None and self.config.dirichlet_kl > 0:
            loss = loss + self.config.dirichlet_kl * dirichlet_kl_penalty(hparams)
        return loss

    @contextlib.contextmanager
    def expected_mixing(self) -> Iterator[None]:
        """Evaluation with the deterministic mixing weights: the Dirichlet mean under DrNAS, else softmax(α)."""
        if self.dirichlet is None:
            yield
            return
        self.dirichlet.expected = True
        try:
            yield
        finally:
            self.dirichlet.expected = False

    def random_cell(self) -> Cell:
        """A cell drawn uniformly from the 5^6 of NAS-Bench-201 (``random-ws``)."""
        picks = torch.randint(0, len(OPERATIONS), (len(EDGES),), generator=self.path_generator)
        return Cell(tuple(OPERATIONS[int(k)] for k in picks))

    def weight_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One SGD step on the weights; returns ``[loss, accuracy]`` on the batch as a device tensor (no host read)."""
        x, y = batch
        sampling = self.config.method == "random-ws"
        if self.dirichlet is not None:
            self.dirichlet.resample(self.alphas)
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
        return torch.stack([loss, acc])

    def arch_step(self, lr: float, last_batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
        """One α step; returns the library's diagnostics. Raises ``hg.NonFiniteError`` before any update."""
        inner_batch = self.parallel.sharded(self.hessian_stream) if self.config.method == "idarts" else last_batch
        if self.dirichlet is not None:  # one sample for the whole hypergradient: every loss sees the same supernet
            self.dirichlet.resample(self.alphas)
        # The library warns when a series or solve grows; the log records those steps (info.diverged)
        # and the progress bar reports them once, instead of a warning per step over the bar.
        with _frozen_bn_statistics(self.net), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = hg.hypergradient(self.outer_loss, self.inner_loss, self.weights, self.alphas,
                                      outer_batch=self.parallel.shard(self.val_stream()), inner_batch=inner_batch,
                                      method=estimator(self.config, lr), reduce=self.parallel.reduce)
        # hg.hypergradient has checked every α's gradient finite (one host read) before returning.
        for name, alpha in self.alphas.items():
            alpha.grad = result.grads[name].detach().to(alpha.dtype)
        self.a_opt.step()
        return result.info

    def state_dict(self, state: SearchState) -> dict[str, Any]:
        """The checkpoint: tensors and plain values only (:func:`applications.checkpoints.pack`)."""
        return checkpoints.pack(CHECKPOINT_KIND, _CHECKPOINT_VERSION, {
            "config": asdict(self.config),
            "model": self.net.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "streams": {name: getattr(self, name).state_dict()
                        for name in ("train_stream", "val_stream", "hessian_stream")},
            "path_generator": self.path_generator.get_state(),
            "dirichlet_generator": None if self.dirichlet is None else self.dirichlet.generator.get_state(),
            "rng": checkpoints.rng_state(),
            "initial_alphas": state.initial_alphas,
            "history": state.history,
            "nonfinite_steps": state.nonfinite_steps,
            "wall_time": state.wall_time,
            "epochs_done": state.epochs_done,
            "epoch_progress": state.epoch_progress,
        })

    def load_state_dict(self, checkpoint: dict[str, Any], path: Path) -> SearchState:
        """Restore a checkpoint read by :func:`load_checkpoint`; a part that does not fit this search's
        supernet, optimizers or streams is a one-line :class:`~applications.checkpoints.CheckpointError`."""
        try:
            self.net.load_state_dict(checkpoint["model"])
            self.w_opt.load_state_dict(checkpoint["w_opt"])
            self.a_opt.load_state_dict(checkpoint["a_opt"])
            for name in ("train_stream", "val_stream", "hessian_stream"):
                getattr(self, name).load_state_dict(checkpoint["streams"][name])
            self.path_generator.set_state(checkpoint["path_generator"])
            if self.dirichlet is not None:
                self.dirichlet.generator.set_state(checkpoint["dirichlet_generator"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise checkpoints.CheckpointError(f"{path} does not fit the search its own config describes ({first}); "
                                              "expected the checkpoint.pt that search wrote") from None
        checkpoints.set_rng_state(checkpoint["rng"], path, self.device)
        return SearchState(self.alphas_now(), checkpoint["initial_alphas"], checkpoint["history"],
                           checkpoint["nonfinite_steps"], checkpoint["wall_time"], checkpoint["epochs_done"],
                           epoch_progress=checkpoint.get("epoch_progress"))


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
            x, y = val.batch(torch.arange(start, min(start + 256, len(val)), device=val.device))
            correct += int((search.net.forward_path(x, cell).argmax(1) == y).sum())
        scored[str(cell)] = correct / len(val)
    search.net.train()
    best = max(scored, key=lambda arch: scored[arch])
    return {"arch": best, "val_acc": scored[best], "candidates": candidates, "distinct_cells": len(scored),
            "median_candidate_val_acc": float(np.median(list(scored.values())))}


def select_by_perturbation(search: _Search, val: ImageSet, progress: bool = False) -> dict[str, Any]:
    """The cell chosen by perturbation (:func:`perturbation_select`) on the trained supernet.

    Edges are decided in a seeded random order; after each, the weights are fine-tuned for
    ``pt_tune_steps`` weight steps at a tenth of the initial weight learning rate with the edges decided
    so far fixed. The supernet is changed by the fine-tuning; α is not.
    """
    config = search.config
    (alpha,) = search.alphas.values()
    with search.expected_mixing(), torch.no_grad():
        start = search.net.mixing("alpha", alpha).detach().clone()
    saved_mixing = search.net.mixing

    scored = val if config.pt_val_images is None else val.subset(torch.arange(min(config.pt_val_images, len(val))))

    def correct(weights: torch.Tensor, images: ImageSet = scored) -> torch.Tensor:
        search.net.mixing = lambda name, a: weights
        try:
            return correct_per_image(search.net, images, search.device)
        finally:
            search.net.mixing = saved_mixing

    def accuracy(weights: torch.Tensor, images: ImageSet = scored) -> float:
        return int(correct(weights, images).sum()) / len(images)

    def tune(weights: torch.Tensor) -> None:
        search.net.mixing = lambda name, a: weights
        for group in search.w_opt.param_groups:
            group["lr"] = config.w_lr / 10
        try:
            for _ in range(config.pt_tune_steps):
                search.weight_step(search.parallel.shard(search.train_stream()))
        finally:
            search.net.mixing = saved_mixing

    argmax_weights = torch.nn.functional.one_hot(start.argmax(dim=1), start.shape[1]).to(start.dtype)
    argmax_val_acc = accuracy(argmax_weights)  # the argmax cell on the search's final weights, before any tuning
    order = torch.randperm(start.shape[0], generator=torch.Generator().manual_seed(config.seed + 6)).tolist()
    with tqdm(total=len(order), unit="edge", desc="perturbation selection", disable=not progress,
              dynamic_ncols=True) as bar:
        def decided(record: dict[str, Any]) -> None:
            bar.set_postfix(edge="{1}->{0}".format(*EDGES[record["edge"]]), op=OPERATIONS[record["choice"]], refresh=False)
            bar.update(1)

        chosen, records = perturbation_select(start, correct, order, tune, inert_columns=(OPERATIONS.index("none"),),
                                              on_edge=decided, capped=[OPERATIONS.index(op) for op in PARAMETER_FREE],
                                              cap=config.pt_max_param_free,
                                              preferred=[OPERATIONS.index(op) for op in OPERATIONS if op not in PARAMETER_FREE]
                                              if config.pt_ties == "parametric" else ())
    cell = Cell(tuple(OPERATIONS[int(k)] for k in chosen.argmax(dim=1)))
    for record in records:
        record["operation"] = OPERATIONS[record["choice"]]
    val_acc = accuracy(chosen)
    # On the whole validation half too: the measure that compares PT settings scored on different subsets.
    whole_val_acc = accuracy(chosen, val) if len(scored) < len(val) else val_acc
    return {"arch": str(cell), "val_acc": val_acc, "val_acc_all_images": whole_val_acc, "argmax_val_acc": argmax_val_acc,
            "order": order, "edges": records, "clear_edges": clear_decisions(records), "tune_steps": config.pt_tune_steps,
            "val_images": len(scored), "max_param_free": config.pt_max_param_free, "ties": config.pt_ties}


def load_checkpoint(out_dir: Path) -> dict[str, Any]:
    """The checkpoint of a search folder, read without running code from it and checked field by field.

    Raises:
        CheckpointError: (a ``ValueError``) one line naming the file and what was expected: missing, not a
            checkpoint, written by an older version, or with a field of the wrong type or non-finite values.
    """
    path = Path(out_dir) / CHECKPOINT
    checkpoint = checkpoints.load(path, CHECKPOINT_KIND, _CHECKPOINT_VERSION,
                                  "the checkpoint.pt of a search (its --out folder)")
    checkpoints.require(checkpoint, {
        "config": dict, "model": dict, "w_opt": dict, "a_opt": dict, "streams": dict, "path_generator": torch.Tensor,
        "rng": dict, "initial_alphas": dict, "history": list, "nonfinite_steps": list, "wall_time": (int, float),
        "epochs_done": (int,)}, path)
    for name in ("model", "initial_alphas"):
        checkpoints.require_finite(checkpoint[name], path, name)
    try:
        SearchConfig.from_dict(checkpoint["config"])
    except (SearchConfigError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise checkpoints.CheckpointError(f"{path}: its config is not valid ({first})") from None
    if not 0 <= checkpoint["epochs_done"] <= checkpoint["config"].get("epochs", 0):
        raise checkpoints.CheckpointError(f"{path}: epochs_done {checkpoint['epochs_done']} is outside 0..epochs")
    return checkpoint


def _epoch_record(epoch: int, lr: float, losses: list[float], accs: list[float], val: tuple[float, float],
                  seconds: float, steps: int, infos: list[dict[str, Any]], skipped: int, space: SearchSpace,
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
        record["hvps_per_step"] = float(np.mean([i["hvps"] for i in infos]))
        record["solver_iterations"] = float(np.mean([i["iterations"] for i in infos]))
        residuals = [i["residual_norm"] for i in infos if not math.isnan(i["residual_norm"])]
        if residuals:
            record["residual_norm"] = float(np.mean(residuals))
        converged = [i["converged"] for i in infos if i["converged"] is not None]
        if converged:
            record["converged_fraction"] = float(np.mean(converged))
        record["diverged_steps"] = int(sum(i["diverged"] for i in infos))
    return record


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Inside it, SIGTERM stops a search as Ctrl-C does (:class:`SearchInterrupted`, naming the intact
    checkpoint). ``torchrun`` sends SIGTERM to the other processes of a job when one of them fails."""
    def stop(signum: int, _frame: Any) -> None:
        # Once the search is stopping (for this signal or a lost process), a second signal must not cut
        # short the message that names the checkpoint.
        if not _STOPPING.is_set():
            _STOPPING.set()
            raise KeyboardInterrupt(signal.Signals(signum).name)

    _STOPPING.clear()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may handle signals
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_STOPPING = threading.Event()


def _lost_process(err: RuntimeError) -> bool:
    """Whether ``err`` is a collective that failed because a process of the job is gone (gloo and NCCL
    raise plain ``RuntimeError``s naming themselves, newer torch a ``DistError``)."""
    return isinstance(err, dist.DistError) or any(word in str(err) for word in ("gloo", "NCCL", "Connection"))


def _interruption(reason: str, position: tuple[int, int], saved: tuple[int, int], steps: int, out: Path) -> str:
    """One line: where the search stopped, and the checkpoint it continues from."""
    epoch, step = position
    epochs_done, into_next = saved
    at = f"after {epochs_done} epochs"
    if into_next:
        at += f" and {into_next} of the {steps} steps of epoch {epochs_done + 1}"
    return (f"search stopped at epoch {epoch + 1}, step {min(step + 1, steps)} of {steps}: {reason}. The last checkpoint, "
            f"{at}, is intact in {out / CHECKPOINT}: the same command continues from it (under torchrun, "
            "--max-restarts N restarts the job, which then continues by itself)")


def _read_metrics(unread: list[torch.Tensor], losses: list[float], accs: list[float]) -> None:
    """Move the unread ``[loss, accuracy]`` tensors of weight steps to the host lists, in one read."""
    for loss, acc in torch.stack(unread).tolist():
        losses.append(loss)
        accs.append(acc)
    unread.clear()


def run_search(config: SearchConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
               on_epoch_end: EpochCallback | None = None, parallel: DataParallel | None = None,
               device: str | None = None, checkpoint_every: int = 0) -> SearchState:
    """Runs (or resumes) a search, writing ``checkpoint.pt`` and ``log.jsonl`` into ``out_dir`` each epoch.

    Args:
        config: the search settings (on resume, those stored in the checkpoint are used), and with them the
            numeric backend (:func:`applications.nas.common.backend.configure`).
        out_dir: the search folder.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show a tqdm progress bar on stderr.
        on_epoch_end: called with ``(epoch, state)`` after each epoch's checkpoint is on disk.
        parallel: the data-parallel job (default: from the environment, see
            :meth:`DataParallel.from_environment`); only its process 0 writes into ``out_dir``.
        device: on resume, the device to continue on instead of the checkpoint's (its tensors are
            loaded onto this one).
        checkpoint_every: also write the checkpoint every this many steps within an epoch (0: at the end of
            each epoch only), so that an interruption loses at most that many steps; a resume continues
            from the step it holds and ends as the uninterrupted search.

    Raises:
        SearchInterrupted: on Ctrl-C or SIGTERM (see :func:`stop_on_sigterm`), or when another process of a
            data-parallel job is lost; the message names the intact checkpoint.

    Returns:
        The final :class:`SearchState`.
    """
    out = Path(out_dir)
    checkpoint = load_checkpoint(out) if resume else None
    if checkpoint is not None:
        config = SearchConfig.from_dict(checkpoint["config"])
        if device is not None:
            config = replace(config, device=device)
    configure_backend(config.device, tf32=config.tf32, deterministic=config.deterministic)
    parallel = parallel or DataParallel.from_environment(config.device)
    dataset = load_dataset(config.dataset, config.data_dir, config.image_size)  # a bad dataset leaves no folder
    if parallel.is_writer:
        out.mkdir(parents=True, exist_ok=True)
    train, val = split_train_val(dataset.train, config.seed, config.train_subset)
    search = _Search(config, train, val, parallel)
    if checkpoint:
        state = search.load_state_dict(checkpoint, out / CHECKPOINT)
    else:
        state = SearchState(search.alphas_now(), search.alphas_now())

    steps = search.train_stream.batches_per_pass
    done = state.epoch_progress["step"] if state.epoch_progress else 0
    bar = tqdm(total=config.epochs * steps, initial=state.epochs_done * steps + done,
               disable=not (progress and parallel.is_writer), unit="step", dynamic_ncols=True, desc=f"{config.method}")
    reported_growth = False
    saved = (state.epochs_done, done)  # what the checkpoint on disk holds: (epochs done, steps into the next)
    position = saved

    def save(epoch_steps: int) -> None:
        nonlocal saved
        if parallel.is_writer:
            atomic_write_text(out / LOG, "".join(json.dumps(r) + "\n" for r in state.history))
            atomic_write_bytes(out / CHECKPOINT, functools.partial(torch.save, search.state_dict(state)))
        saved = (state.epochs_done, epoch_steps)
        parallel.barrier()

    try:
        for epoch in range(state.epochs_done, config.epochs):
            started = time.perf_counter()
            lr = config.weight_lr(epoch)
            for group in search.w_opt.param_groups:
                group["lr"] = lr
            for group in search.a_opt.param_groups:
                group["lr"] = config.arch_lr(epoch)
            search.beta_weight = beta_decay_weight(config.beta_decay, epoch, config.epochs)
            progress_so_far = state.epoch_progress or {"step": 0, "losses": [], "accs": [], "infos": [], "skipped": 0,
                                                       "seconds": 0.0}
            losses: list[float] = progress_so_far["losses"]
            accs: list[float] = progress_so_far["accs"]
            infos: list[dict[str, Any]] = progress_so_far["infos"]
            skipped: int = progress_so_far["skipped"]
            earlier = progress_so_far["seconds"]  # this epoch's time before an interruption
            unread: list[torch.Tensor] = []  # [loss, accuracy] of the steps since the last host read
            for step in range(progress_so_far["step"], steps):
                position = (epoch, step)
                batch = parallel.shard(search.train_stream())
                unread.append(search.weight_step(batch))
                if len(unread) == READ_EVERY or step == steps - 1:
                    _read_metrics(unread, losses, accs)
                moves_alpha = config.method in GRADIENT_METHODS and epoch >= config.warmup_epochs
                if moves_alpha and (step + 1) % config.inner_steps == 0:
                    try:
                        info = search.arch_step(lr, batch)
                        infos.append({"hvps": info.hvps, "iterations": info.iterations,
                                      "residual_norm": info.residual_norm, "converged": info.converged,
                                      "diverged": bool(info.diverged)})
                        if info.diverged and not reported_growth:
                            reported_growth = True
                            bar.write(f"note: the {config.method} solve grew at epoch {epoch + 1}, step {step + 1} "
                                      f"({info.message or 'diverged'}); such steps are counted in the log "
                                      "as diverged_steps")
                    except hg.NonFiniteError as err:
                        skipped += 1
                        note = {"epoch": epoch + 1, "step": step + 1, "message": str(err).splitlines()[0]}
                        state.nonfinite_steps.append(note)
                        bar.write(f"warning: non-finite hypergradient at epoch {epoch + 1}, step {step + 1}; "
                                  f"α step skipped ({note['message']})")
                elapsed = time.perf_counter() - started
                bar.set_description(f"{config.method} epoch {epoch + 1}/{config.epochs}")
                bar.set_postfix(loss=f"{losses[-1]:.3f}" if losses else "-", acc=f"{np.mean(accs):.3f}" if accs else "-",
                                val_acc=f"{state.history[-1]['val_acc']:.3f}" if state.history else "-",
                                s_step=f"{(earlier + elapsed) / (step + 1):.2f}", refresh=False)
                bar.update(1)
                if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                    if unread:
                        _read_metrics(unread, losses, accs)
                    state.epoch_progress = {"step": step + 1, "losses": losses, "accs": accs, "infos": infos,
                                            "skipped": skipped, "seconds": earlier + time.perf_counter() - started}
                    save(step + 1)
            position = (epoch, steps)
            parallel.average_buffers(search.net)
            parallel.check_identical([*search.net.parameters(), *search.net.buffers()], "supernet weights and α")
            with search.expected_mixing():
                val_metrics = evaluate(search.net, search.val, search.device)
            seconds = earlier + time.perf_counter() - started
            state.alphas = search.alphas_now()
            state.history.append(_epoch_record(epoch, lr, losses, accs, val_metrics, seconds, steps, infos,
                                               skipped, config.search_space, state.alphas))
            state.history[-1]["alpha_lr"] = config.arch_lr(epoch)
            if config.beta_decay > 0:
                state.history[-1]["beta_weight"] = search.beta_weight
            state.wall_time += seconds
            state.epochs_done = epoch + 1
            state.epoch_progress = None
            save(0)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, state)
    except (KeyboardInterrupt, RuntimeError) as err:
        _STOPPING.set()
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if isinstance(err, KeyboardInterrupt):
            reason = f"received {detail}" if detail else "interrupted"
        elif parallel.active and _lost_process(err):
            reason = f"another process of the job was lost ({detail})"
        else:
            raise
        raise SearchInterrupted(_interruption(reason, position, saved, steps, out)) from err
    finally:
        bar.close()
    if config.method == "random-ws":
        state.selected = select_by_weight_sharing(search, search.val, config.rsws_candidates)
    if config.selection == "pt":
        state.perturbation = select_by_perturbation(search, search.val, progress and parallel.is_writer)
    return state
