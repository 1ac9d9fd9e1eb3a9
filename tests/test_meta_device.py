"""Every estimator runs on the ``meta`` device up to its first host read, and that read is where it belongs
(:mod:`tests.meta_probe`): no tensor is created on the CPU inside a solve, and no estimator synchronises
with the host before its one read of the solver record or of the finiteness flags."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.meta_probe import first_host_read

API = "hypergrad/api.py:_raise_on_nonfinite"  # the one read of every finiteness flag
RECORD = "hypergrad/solvers/info.py:tolerance_record"  # the one read of an iterative solver's record
SERIES = "hypergrad/solvers/info.py:to_floats"  # the one read of a Neumann series' term norms
DENSE = "hypergrad/solvers/dense.py:dense_solve"  # the one read of the dense solve's residual
FIXED_POINT = "hypergrad/solvers/fixed_point.py:fixed_point"  # its convergence test before the first step

LOSS_METHODS = [
    (hg.FirstOrder(), API), (hg.OneStep(), API), (hg.OneStep(finite_difference=False), API),
    (hg.Unrolled(steps=2), API), (hg.Exact(), DENSE), (hg.CG(max_iter=3), RECORD),
    (hg.CG(max_iter=3, hvp="forward"), RECORD), (hg.CG(max_iter=3, hvp="finite_difference"), RECORD),
    (hg.MINRES(max_iter=3), RECORD), (hg.GMRES(max_iter=3), RECORD), (hg.BiCGSTAB(max_iter=3), RECORD),
    (hg.NormalCG(max_iter=3), RECORD), (hg.Neumann(terms=2), SERIES), (hg.StochasticNeumann(terms=2), SERIES),
    # lr="auto" draws its power-iteration start from a generator on the device, which meta does not have.
    (hg.FixedPoint(max_iter=3, lr=0.1), FIXED_POINT),
]
CONDITION_METHODS = [(hg.FirstOrder(), API), (hg.Exact(), DENSE), (hg.FixedPoint(max_iter=3, lr=0.1), FIXED_POINT),
                     (hg.GMRES(max_iter=3), RECORD), (hg.BiCGSTAB(max_iter=3), RECORD), (hg.NormalCG(max_iter=3), RECORD)]


def _problem() -> tuple[dict, dict, tuple]:
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(12, 3, generator=gen), torch.randn(12, generator=gen)
    return {"w": torch.randn(3, generator=gen).to("meta")}, {"lam": torch.zeros(3, device="meta")}, (X.to("meta"), y.to("meta"))


def _inner(p, h, batch):  # type: ignore[no-untyped-def]
    X, y = batch
    return 0.5 * ((torch.tanh(X @ p["w"]) - y) ** 2).sum() + 0.5 * (h["lam"].exp() * p["w"] ** 2).sum()


def _outer(p, h, batch):  # type: ignore[no-untyped-def]
    X, y = batch
    return 0.5 * ((X @ p["w"] - y) ** 2).sum()


def _stationarity(p, h, batch):  # type: ignore[no-untyped-def]
    X, y = batch
    return {"w": X.T @ ((torch.tanh(X @ p["w"]) - y) * (1 - torch.tanh(X @ p["w"]) ** 2)) + h["lam"].exp() * p["w"]}


def _name(method: object) -> str:
    return f"{type(method).__name__}-{getattr(method, 'hvp', '')}".rstrip("-")


@pytest.mark.parametrize(("method", "where"), LOSS_METHODS, ids=[_name(m) for m, _ in LOSS_METHODS])
def test_each_estimator_stops_on_meta_at_its_one_host_read(method: hg.CG, where: str) -> None:
    w, lam, batch = _problem()
    assert first_host_read(lambda: hg.hypergradient(_outer, _inner, w, lam, outer_batch=batch, inner_batch=batch,
                                                    method=method)) == where


@pytest.mark.parametrize("condition", ["Root", "FixedPointMap"])
@pytest.mark.parametrize(("method", "where"), CONDITION_METHODS, ids=[_name(m) for m, _ in CONDITION_METHODS])
def test_each_condition_method_stops_on_meta_at_its_one_host_read(condition: str, method: hg.GMRES, where: str) -> None:
    w, lam, batch = _problem()
    cond = hg.Root(_stationarity) if condition == "Root" else hg.FixedPointMap(
        lambda p, h, b: {"w": p["w"] - 0.1 * _stationarity(p, h, b)["w"]})
    assert first_host_read(lambda: hg.hypergradient(_outer, cond, w, lam, outer_batch=batch, inner_batch=batch,
                                                    method=method)) == where


def test_a_cpu_tensor_in_the_computation_fails_the_probe() -> None:
    # The probe's own check: a CPU-created tensor meeting device tensors is a device mismatch, not a host read.
    w, lam, batch = _problem()

    def leaks_a_cpu_tensor(p, h, b):  # type: ignore[no-untyped-def]
        return _inner(p, h, b) + (torch.ones(3) * p["w"]).sum()

    with pytest.raises(pytest.fail.Exception, match="before any host read"):
        first_host_read(lambda: hg.hypergradient(_outer, leaks_a_cpu_tensor, w, lam, outer_batch=batch,
                                                 inner_batch=batch, method=hg.CG(max_iter=2)))
