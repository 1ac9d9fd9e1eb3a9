"""Data-parallel search: two gloo processes against one process on the same global batches.

By default BatchNorm normalises by the global batch's statistics (:mod:`applications.nas.common.distributed`),
so the reference is the ordinary one-process search: the same streams, weight steps, hypergradients (every
Hessian term on a fresh batch for iDARTS) and optimizers. After two epochs (six weight steps, six α steps)
α and every weight must match it to float tolerance on both processes. With ``bn_sync=False`` each process
normalises its own half, and the reference is the one-process search with each batch's two halves normalised
separately ("ghost" BatchNorm: the supernet's forward applied to each half, the logits concatenated).
"""

from __future__ import annotations

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
from applications.nas.spaces.registry import NB201

pytestmark = pytest.mark.float32

WORLD = 2
METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg")
TINY = SearchConfig(dataset="digits", train_subset=96, batch_size=16, channels=2, cells_per_stage=1, epochs=2,
                    solver_max_iter=2, alpha_lr=0.05, seed=5)
NEW_USER = SearchConfig(dataset="digits", method="idarts", epochs=1, seed=0, channels=4, cells_per_stage=1, alpha_lr=0.05)
"""The issue's trial (digits, idarts, one epoch, seed 0: 14 steps of batch 64) on a small supernet."""


class _Interrupted(Exception):
    pass


def _stop_after_first_epoch(epoch: int, _state: Any) -> None:
    if epoch == 1:
        raise _Interrupted


def _worker(rank: int, world: int, root: str, out: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=world)
    try:
        parallel = DataParallel.from_environment()
        alphas = {}
        for method in METHODS:
            state = run_search(replace(TINY, method=method), Path(root) / method, progress=False, parallel=parallel)
            alphas[method] = state.alphas
        alphas["ghost"] = run_search(replace(TINY, method="darts-1st", bn_sync=False), Path(root) / "ghost", progress=False,
                                     parallel=parallel).alphas
        alphas["new user"] = run_search(NEW_USER, Path(root) / "new user", progress=False, parallel=parallel).alphas
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


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data_parallel")
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(WORLD, str(root), out), nprocs=WORLD, join=True)
    return root, dict(out)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one_process")
    for method in METHODS:
        run_search(replace(TINY, method=method), root / method, progress=False, parallel=ONE_PROCESS)
    run_search(NEW_USER, root / "new user", progress=False, parallel=ONE_PROCESS)
    forward = Supernet.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Supernet, "forward", lambda net, x: torch.cat([forward(net, h) for h in x.chunk(WORLD)]))
        run_search(replace(TINY, method="darts-1st", bn_sync=False), root / "ghost", progress=False, parallel=ONE_PROCESS)
    return root


def _same_search(got: Path, reference: Path, alphas: dict[str, torch.Tensor]) -> None:
    expected = load_checkpoint(reference)
    for name, alpha in alphas.items():
        torch.testing.assert_close(alpha, expected["model"][name], rtol=1e-4, atol=1e-5)
    moved = float((expected["model"]["alpha"] - expected["initial_alphas"]["alpha"]).abs().max())
    assert moved > 0.05  # α moved, so matching it is not matching the initialisation
    written = load_checkpoint(got)
    for name, weight in expected["model"].items():
        torch.testing.assert_close(written["model"][name], weight, rtol=1e-4, atol=1e-5, msg=f"weight {name}")
    assert [r["epoch"] for r in written["history"]] == [r["epoch"] for r in expected["history"]]


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_search_as_one_on_the_global_batches(method: str, two_processes: tuple[Path, dict],
                                                           one_process: Path) -> None:
    root, alphas = two_processes
    for rank in range(WORLD):  # every process ends with the same α (and, checked each epoch, the same weights)
        _same_search(root / method, one_process / method, alphas[rank][method])


def test_the_issues_trial_ends_with_the_one_process_alpha_and_cell(two_processes: tuple[Path, dict],
                                                                  one_process: Path) -> None:
    """digits, idarts, one epoch, seed 0: per-process statistics left α 2.1e-3 away and derived another cell."""
    root, alphas = two_processes
    expected = load_checkpoint(one_process / "new user")["model"]["alpha"]
    assert float((alphas[0]["new user"]["alpha"] - expected).abs().max()) < 1e-4
    assert str(NB201.derive(alphas[0]["new user"], False)) == str(NB201.derive({"alpha": expected}, False))
    _same_search(root / "new user", one_process / "new user", alphas[1]["new user"])


def test_per_process_statistics_are_ghost_batch_norm_over_the_slices(two_processes: tuple[Path, dict],
                                                                     one_process: Path) -> None:
    root, alphas = two_processes
    _same_search(root / "ghost", one_process / "ghost", alphas[0]["ghost"])


def test_only_process_zero_writes_and_an_interrupted_run_resumes(two_processes: tuple[Path, dict]) -> None:
    root, alphas = two_processes
    assert sorted(p.name for p in (root / "idarts").iterdir()) == sorted([CHECKPOINT, "log.jsonl"])
    for rank in range(WORLD):
        for name, alpha in alphas[rank]["resumed"].items():
            torch.testing.assert_close(alpha, alphas[rank]["idarts"][name], rtol=0, atol=0)
