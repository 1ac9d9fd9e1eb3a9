"""Data-parallel reduction: two gloo ranks on this machine average their shard hypergradients."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hypergrad as hg
from hypergrad.distributed import all_reduce_mean


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        local = {"a": torch.full((2, 3), float(rank + 1)), "b": torch.tensor(10.0 * rank)}
        out[rank] = all_reduce_mean(local)
    finally:
        dist.destroy_process_group()


def test_all_reduce_mean_averages_over_two_ranks():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    for rank in (0, 1):
        assert torch.equal(out[rank]["a"], torch.full((2, 3), 1.5))
        assert float(out[rank]["b"]) == 5.0


def test_all_reduce_mean_without_a_process_group_returns_a_copy():
    g = {"x": torch.arange(3.0)}
    r = all_reduce_mean(g)
    assert torch.equal(r["x"], g["x"]) and r["x"].data_ptr() != g["x"].data_ptr()
    assert hg.tree.flatten(r).shape == (3,)
