"""Data-parallel search and retraining on ``torch.distributed``: the processes of one ``torchrun`` job.

Under ``torchrun --nproc_per_node=P`` (``--nnodes`` and a rendezvous endpoint for several machines) every
process draws the same global batches from the same seeded streams and keeps its own contiguous slice of
each (:meth:`DataParallel.shard`); gradients are averaged over processes with one ``all_reduce`` each, the
architecture gradient through the library's ``reduce=`` option. All processes therefore take identical
steps and hold identical α and weights; process 0 alone writes logs, checkpoints and results.

BatchNorm: by default (``synchronise_batch_norm``) every BatchNorm of the supernet normalises by the
statistics of the global batch, as ``SyncBatchNorm`` does: each process sums its slice's values and
squares per channel, one all-reduce adds them up, and the all-reduce is differentiable (its adjoint is
an all-reduce), so backward passes, Hessian-vector products and mixed products see the same function
of the global batch as one process does. A P-process search then computes the one-process search. That
costs one small all-reduce per BatchNorm in every forward pass and again in every backward and double
backward (docs/nas.md measures it). Without it, each process normalises its slice by its own
statistics (``DistributedDataParallel`` without ``SyncBatchNorm``): "ghost" BatchNorm over P slices of
each batch, a different search from the one-process one. Running statistics, where tracked, are
averaged over processes before each evaluation and checkpoint.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import hypergrad as hg

Batch = tuple[torch.Tensor, ...]


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over the processes, differentiable to any order: its adjoint is itself."""

    @staticmethod
    def forward(tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _SumOverProcesses.apply(grad)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the global batch of a data-parallel job (in training mode).

    Per channel, the sums of the values and of their squares and the number of values are added up over
    the processes by one differentiable all-reduce; mean and (biased) variance follow from them. In
    evaluation mode, or outside a process group, it is ``nn.BatchNorm2d``: evaluation runs on whole sets
    on every process, with nothing to synchronise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        local = x.new_full((1,), x.numel() // x.shape[1])
        totals = _SumOverProcesses.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), local]))
        channels = x.shape[1]
        count = totals[-1].detach()
        mean = totals[:channels] / count
        var = torch.clamp_min(totals[channels:2 * channels] / count - mean * mean, 0.0)
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * count / torch.clamp_min(count - 1, 1.0))
        out = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """The running averages ``nn.BatchNorm2d`` keeps, from the global batch's statistics."""
        assert self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased_var, factor)


def synchronise_batch_norm(net: nn.Module) -> nn.Module:
    """``net`` with every ``nn.BatchNorm2d`` replaced, in place, by a :class:`GlobalBatchNorm2d` with its state."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                synced = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                           child.track_running_stats)
                synced.load_state_dict(child.state_dict())
                setattr(module, name, synced)
    return net


def process_device(device: str | torch.device, local_rank: int, world_size: int) -> torch.device:
    """The device of process ``local_rank`` (its index on its machine) in a job of ``world_size`` processes.

    In a data-parallel job every process has a GPU of its own: ``cuda`` and any ``cuda:N`` become
    ``cuda:<local_rank>`` (an explicit index would put every process on one GPU, which NCCL refuses).
    Any other device, and any device of a one-process job, is kept as given.
    """
    place = torch.device(device)
    if world_size > 1 and place.type == "cuda":
        return torch.device("cuda", local_rank)
    return place


def _attempt_store() -> dist.Store | None:
    """torchrun's key-value store, under a prefix of this attempt when torchrun restarts jobs.

    torchrun keeps one store for all the attempts of a job (``TORCHELASTIC_USE_AGENT_STORE``), and the
    process group's keys carry no attempt: a restarted job then read the addresses of the processes it
    replaced and failed to connect ("Connection refused"). ``None`` (the environment's own rendezvous)
    outside torchrun's shared store.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
    return dist.PrefixStore(f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel job (rank 0 of 1 when not distributed).

    Attributes:
        rank: this process, 0..world_size-1.
        world_size: P, the number of processes.
        local_rank: this process's index on its machine (its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the outputs (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "cpu") -> DataParallel:
        """The job this process belongs to: an initialised process group, or ``torchrun``'s variables.

        Under ``torchrun`` (``WORLD_SIZE`` > 1) the default process group is created here, with ``nccl``
        for a CUDA device and ``gloo`` otherwise, and destroyed at exit. Without either, one process.
        """
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        place = process_device(device, local, int(os.environ["WORLD_SIZE"]))
        if place.type == "cuda":
            torch.cuda.set_device(place)
        dist.init_process_group("nccl" if place.type == "cuda" else "gloo", store=_attempt_store(),
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                device_id=place if place.type == "cuda" else None)
        atexit.register(dist.destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size(), local)

    def device(self, device: str) -> torch.device:
        """``device`` for this process (see :func:`process_device`)."""
        return process_device(device, self.local_rank, self.world_size)

    def check_batch_size(self, batch_size: int) -> None:
        """A one-line ``ValueError`` unless the global batch splits evenly over the processes."""
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} does not split evenly over {self.world_size} processes; "
                             f"expected a multiple of {self.world_size}")

    def shard(self, batch: Batch) -> Batch:
        """This process's contiguous slice of every tensor of a global batch."""
        if not self.active:
            return batch
        return tuple(t.chunk(self.world_size)[self.rank] for t in batch)

    def sharded(self, source: Callable[[], Batch]) -> Callable[[], Batch]:
        """A batch source that yields this process's slice of each of ``source``'s global batches."""
        return source if not self.active else lambda: self.shard(source())

    @property
    def reduce(self) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
        """The ``reduce=`` of ``hg.hypergradient``: the mean over processes, or ``None`` for one process."""
        return hg.all_reduce_mean if self.active else None

    def average(self, tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The mean over processes of each tensor, in one ``all_reduce``; ``None`` entries stay ``None``.

        The entries that are ``None`` must be the same on every process (a sampled path leaves the same
        operations without gradients everywhere).
        """
        present = {str(i): t for i, t in enumerate(tensors) if t is not None}
        if not self.active or not present:
            return list(tensors)
        averaged = hg.all_reduce_mean(present)
        return [averaged.get(str(i)) for i in range(len(tensors))]

    def average_buffers(self, net: nn.Module) -> None:
        """BatchNorm running statistics (floating buffers) averaged over processes, in place."""
        buffers = [b for b in net.buffers() if b.is_floating_point()]
        if self.active and buffers:
            with torch.no_grad():
                for b, mean in zip(buffers, self.average(buffers)):
                    assert mean is not None
                    b.copy_(mean)

    def check_identical(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        """Raise ``RuntimeError`` unless ``tensors`` are bit-for-bit the same on every process.

        Compares a fingerprint (sum, sum of squares, index-weighted sum in float64) by a max and a min
        reduction: two small collectives, once per epoch.
        """
        if not self.active:
            return
        flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
        index = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
        print_ = torch.stack([flat.sum(), (flat * flat).sum(), (flat * index).sum()])
        high, low = print_.clone(), print_.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        if not torch.equal(high, low):
            raise RuntimeError(f"the {what} differ between processes (rank {self.rank} of {self.world_size}); "
                               "data-parallel steps should keep them identical")

    def barrier(self) -> None:
        """Wait for every process (after process 0 has written a checkpoint)."""
        if self.active:
            dist.barrier()


ONE_PROCESS = DataParallel()
"""A job of one process: no sharding, no reduction."""
