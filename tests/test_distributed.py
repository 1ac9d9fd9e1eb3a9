"""Data-parallel hypergradients: two gloo processes, each on half of every batch, against one process.

The problem is logistic regression with a per-feature L2 penalty exp(λ_j)·w_j²: its losses are means over
the batch, so the loss of the global batch is the mean of the two halves' losses, and with
``reduce=all_reduce_mean`` every estimator must return the one-process hypergradient of the global
batches on both processes. Without ``reduce`` each process's estimate is visibly different (the check
that the comparison can fail).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import hypergrad as hg
from hypergrad.distributed import all_reduce_mean

WORLD = 2


def _spawn(worker: Any, *args: Any) -> dict:
    out = mp.Manager().dict()
    # The processes meet through a file store, not a TCP port another process could take first.
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(worker, args=(WORLD, f"file://{Path(folder) / 'store'}", out, *args), nprocs=WORLD, join=True)
    return dict(out)


def _worker(rank: int, world: int, init_method: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        local = {"a": torch.full((2, 3), float(rank + 1)), "b": torch.tensor(10.0 * rank, dtype=torch.float64)}
        out[rank] = all_reduce_mean(local)
    finally:
        dist.destroy_process_group()


def test_all_reduce_mean_averages_over_two_ranks():
    out = _spawn(_worker)
    for rank in (0, 1):
        assert torch.equal(out[rank]["a"], torch.full((2, 3), 1.5))
        assert float(out[rank]["b"]) == 5.0 and out[rank]["b"].dtype == torch.float64


def test_all_reduce_mean_without_a_process_group_returns_a_copy():
    g = {"x": torch.arange(3.0)}
    r = all_reduce_mean(g)
    assert torch.equal(r["x"], g["x"]) and r["x"].data_ptr() != g["x"].data_ptr()
    assert hg.tree.flatten(r).shape == (3,)


# ---- the hypergradient of the global batch, on both processes -------------------------------------


def _inner(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(x @ p["w"] + p["b"], y) + 0.5 * (h["log_l2"].exp() * p["w"] ** 2).sum()


def _outer(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    """Validation cross-entropy plus a λ term weighted by the batch, so ∂_λF differs between the halves."""
    x, y = batch
    return F.cross_entropy(x @ p["w"] + p["b"], y) + 0.05 * (x**2).mean() * (h["log_l2"].exp() * p["w"] ** 2).sum()


def _problem() -> tuple[dict, dict, tuple, list[tuple]]:
    """Weights, hyperparameters, a validation batch and five training batches of 16 (float64)."""
    g = torch.Generator().manual_seed(0)
    d, classes = 5, 3
    truth = torch.randn(d, classes, generator=g, dtype=torch.float64)

    def batch(n: int) -> tuple:
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        return x, (x @ truth + 0.5 * torch.randn(n, classes, generator=g, dtype=torch.float64)).argmax(1)

    params = {"w": 0.3 * torch.randn(d, classes, generator=g, dtype=torch.float64),
              "b": torch.zeros(classes, dtype=torch.float64)}
    hparams = {"log_l2": -2.0 + 0.5 * torch.randn(d, classes, generator=g, dtype=torch.float64)}
    return params, hparams, batch(16), [batch(16) for _ in range(5)]


METHODS = {
    "CG": hg.CG(max_iter=30, tol=1e-12),
    "Neumann": hg.Neumann(terms=8, lr=0.5),
    "StochasticNeumann": hg.StochasticNeumann(terms=3, lr=0.5),
    "OneStep": hg.OneStep(lr=0.1, finite_difference=True),
    "FirstOrder": hg.FirstOrder(),
    "MINRES": hg.MINRES(max_iter=30, tol=1e-12),
    "FixedPoint": hg.FixedPoint(max_iter=40, tol=1e-12),
    "GMRES": hg.GMRES(max_iter=30, tol=1e-12),
    "BiCGSTAB": hg.BiCGSTAB(max_iter=30, tol=1e-12),
    "NormalCG": hg.NormalCG(max_iter=30, tol=1e-12),
    "Exact": hg.Exact(damping=0.01),
}
# The stationarity condition ∇_w f = 0 as a root: the condition solvers' reduce path (one VJP per product).
ROOT = hg.Root(lambda p, h, b: torch.func.grad(_inner)(p, h, b))
CONDITION_METHODS = {"Root-GMRES": hg.GMRES(max_iter=30, tol=1e-12), "Root-Exact": hg.Exact()}


def _shard(batch: tuple, rank: int) -> tuple:
    return tuple(t.chunk(WORLD)[rank] for t in batch)


def _sampler(batches: list[tuple], rank: int | None) -> Any:
    """The training batches in order, whole (``rank=None``) or this rank's half of each."""
    stream = iter(batches)
    return lambda: next(stream) if rank is None else _shard(next(stream), rank)


def _hypergradient_worker(rank: int, world: int, init_method: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        params, hparams, val, train = _problem()
        results: dict[str, Any] = {}
        for name, method in METHODS.items():
            def halves(reduce: Any = None, method: Any = method) -> dict:
                return hg.hypergradient(_outer, _inner, params, hparams, outer_batch=_shard(val, rank),
                                        inner_batch=_sampler(train, rank), method=method, reduce=reduce).grads

            results[name] = {
                "reduced": halves(all_reduce_mean),
                "local": halves(),
                "reference": hg.hypergradient(_outer, _inner, params, hparams, outer_batch=val,
                                              inner_batch=_sampler(train, None), method=method).grads,
            }
        for name, method in CONDITION_METHODS.items():
            results[name] = {
                "reduced": hg.hypergradient(_outer, ROOT, params, hparams, outer_batch=_shard(val, rank),
                                            inner_batch=_shard(train[0], rank), method=method,
                                            reduce=all_reduce_mean).grads,
                "reference": hg.hypergradient(_outer, ROOT, params, hparams, outer_batch=val, inner_batch=train[0],
                                              method=method).grads,
            }
        # backward(reduce=...) accumulates the same global-batch hypergradient into .grad.
        lam = {k: v.clone().requires_grad_() for k, v in hparams.items()}
        hg.backward(_outer, _inner, params, lam, outer_batch=_shard(val, rank), inner_batch=_shard(train[0], rank),
                    method=METHODS["CG"], reduce=all_reduce_mean)
        results["backward"] = {"reduced": {k: v.grad for k, v in lam.items()},
                               "reference": hg.hypergradient(_outer, _inner, params, hparams, outer_batch=val,
                                                             inner_batch=train[0], method=METHODS["CG"]).grads}
        # implicit(): the node reduces the cotangent and its products; the direct part is averaged as a gradient.
        lam = {k: v.clone().requires_grad_() for k, v in hparams.items()}
        w = hg.implicit(_inner, params, lam, _shard(train[0], rank), hg.CG(max_iter=30, tol=1e-12),
                        reduce=all_reduce_mean)
        _outer(w, lam, _shard(val, rank)).backward()
        results["implicit"] = {"reduced": all_reduce_mean({k: v.grad for k, v in lam.items()}),
                               "reference": hg.hypergradient(_outer, _inner, params, hparams, outer_batch=val,
                                                             inner_batch=train[0], method=METHODS["CG"]).grads}
        out[rank] = results
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_hypergradients() -> dict:
    return _spawn(_hypergradient_worker)


@pytest.mark.parametrize("name", [*METHODS, *CONDITION_METHODS, "backward", "implicit"])
def test_reduce_gives_the_global_batch_hypergradient_on_every_process(two_process_hypergradients, name):
    for rank in range(WORLD):
        got = two_process_hypergradients[rank][name]
        for k, ref in got["reference"].items():
            torch.testing.assert_close(got["reduced"][k], ref, rtol=1e-10, atol=1e-12)
            assert torch.equal(got["reduced"][k], two_process_hypergradients[0][name]["reduced"][k])


@pytest.mark.parametrize("name", ["CG", "Neumann", "StochasticNeumann", "OneStep", "FirstOrder", "MINRES"])
def test_without_reduce_each_process_estimates_its_own_half(two_process_hypergradients, name):
    got = two_process_hypergradients[0][name]
    assert not torch.allclose(got["local"]["log_l2"], got["reference"]["log_l2"], rtol=1e-3)


def test_reduce_is_refused_by_unrolled_and_must_be_callable():
    params, hparams, val, train = _problem()
    with pytest.raises(hg.HypergradInputError, match="Unrolled"):
        hg.hypergradient(_outer, _inner, params, hparams, outer_batch=val, inner_batch=train[0],
                         method=hg.Unrolled(steps=2, lr=0.1), reduce=all_reduce_mean)
    with pytest.raises(hg.HypergradInputError, match="reduce is a str"):
        hg.hypergradient(_outer, _inner, params, hparams, outer_batch=val, inner_batch=train[0], reduce="mean")
