"""Data-parallel search: two gloo processes against one process on the same global batches.

BatchNorm statistics are per process (:mod:`applications.nas.common.distributed`), so the one-process reference
is the same search with each batch's two halves normalised separately ("ghost" BatchNorm: the supernet's
forward applied to each half and the logits concatenated; the mean cross-entropy is then the mean of the
halves' means). Everything else is the ordinary one-process search: the same streams, weight steps,
hypergradients (every Hessian term on a fresh batch for iDARTS) and optimizers. After two epochs (six
weight steps, six α steps) α and every weight must match it to float tolerance on both processes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from applications.nas.common.distributed import ONE_PROCESS, DataParallel
from applications.nas.searching.config import SearchConfig
from applications.nas.searching.loop import CHECKPOINT, load_checkpoint, run_search
from applications.nas.spaces.nb201.network import Supernet

pytestmark = pytest.mark.float32

WORLD = 2
METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg")
TINY = SearchConfig(dataset="digits", train_subset=96, batch_size=16, channels=2, cells_per_stage=1, epochs=2,
                    solver_max_iter=2, alpha_lr=0.05, seed=5)


class _Interrupted(Exception):
    pass


def _stop_after_first_epoch(epoch: int, _state: Any) -> None:
    if epoch == 1:
        raise _Interrupted


def _worker(rank: int, world: int, port: int, root: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        parallel = DataParallel.from_environment()
        alphas = {}
        for method in METHODS:
            state = run_search(replace(TINY, method=method), Path(root) / method, progress=False, parallel=parallel)
            alphas[method] = state.alphas
        # An interrupted data-parallel search resumes from process 0's checkpoint on every process.
        cut = Path(root) / "resumed"
        try:
            run_search(replace(TINY, method="idarts"), cut, progress=False, parallel=parallel,
                       on_epoch_end=_stop_after_first_epoch)
        except _Interrupted:
            pass
        alphas["resumed"] = run_search(TINY, cut, resume=True, progress=False, parallel=parallel).alphas
        out[rank] = alphas
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data_parallel")
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(WORLD, _free_port(), str(root), out), nprocs=WORLD, join=True)
    return root, dict(out)


@pytest.fixture(scope="module")
def one_process_ghost_bn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one_process")
    forward = Supernet.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Supernet, "forward", lambda net, x: torch.cat([forward(net, h) for h in x.chunk(WORLD)]))
        for method in METHODS:
            run_search(replace(TINY, method=method), root / method, progress=False, parallel=ONE_PROCESS)
    return root


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_match_one_process_on_the_global_batches(method: str, two_processes: tuple[Path, dict],
                                                                 one_process_ghost_bn: Path) -> None:
    root, alphas = two_processes
    reference = load_checkpoint(one_process_ghost_bn / method)
    got = load_checkpoint(root / method)
    for rank in range(WORLD):  # every process ends with the same α (and, checked each epoch, the same weights)
        for name, alpha in alphas[rank][method].items():
            torch.testing.assert_close(alpha, reference["model"][name], rtol=1e-4, atol=1e-5)
    moved = max(float((reference["model"]["alpha"] - reference["initial_alphas"]["alpha"]).abs().max()), 0.0)
    assert moved > 0.05  # α moved, so matching it is not matching the initialisation
    for name, weight in reference["model"].items():
        torch.testing.assert_close(got["model"][name], weight, rtol=1e-4, atol=1e-5, msg=f"weight {name}")
    assert [r["epoch"] for r in got["history"]] == [1, 2]


def test_only_process_zero_writes_and_an_interrupted_run_resumes(two_processes: tuple[Path, dict]) -> None:
    root, alphas = two_processes
    assert sorted(p.name for p in (root / "idarts").iterdir()) == sorted([CHECKPOINT, "log.jsonl"])
    for rank in range(WORLD):
        for name, alpha in alphas[rank]["resumed"].items():
            torch.testing.assert_close(alpha, alphas[rank]["idarts"][name], rtol=0, atol=0)
