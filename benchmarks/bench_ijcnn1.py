"""Cost of one hypergradient on an ijcnn1-sized problem, with and without warm start and preconditioning.

The problem has ijcnn1's form and size (49,990 training and 91,701 test rows of 22 features, per-feature
L2 exp(x_j); ``applications.hpo.ijcnn1.problem.synthetic``), so it needs no data files. Each round
computes the hypergradients along a short outer path x_t = x0 + 0.05 t (t = 1..PATH), each at its exact
inner solution (solved before timing), the way an outer loop calls them; the time per hypergradient is
the round's time / PATH, and ``extra_info["products"]`` the Hessian-vector products per hypergradient.
Run with ``make bench`` or ``pytest benchmarks/bench_ijcnn1.py --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import hypergrad as hg
from applications.hpo.ijcnn1.problem import hessian_diagonal, inner_loss, newton, outer_loss, start, synthetic

PATH = 5
ROUNDS = 3

VARIANTS: dict[str, tuple[Callable[[], object], bool]] = {
    "CG cold": (lambda: hg.CG(max_iter=1000, tol=1e-10), False),
    "CG warm": (lambda: hg.CG(max_iter=1000, tol=1e-10), True),
    "CG+Jacobi cold": (lambda: hg.CG(max_iter=1000, tol=1e-10, preconditioner=hg.Jacobi(diagonal=hessian_diagonal)),
                       False),
    "CG+Jacobi warm": (lambda: hg.CG(max_iter=1000, tol=1e-10, preconditioner=hg.Jacobi(diagonal=hessian_diagonal)),
                       True),
    "CG+Hutchinson-Jacobi warm": (lambda: hg.CG(max_iter=1000, tol=1e-10, preconditioner=hg.Jacobi(samples=5)), True),
    "Auto (dense, n=22)": (lambda: hg.Auto(), False),
}


@pytest.fixture(scope="module")
def path() -> tuple[object, list[tuple[torch.Tensor, torch.Tensor]]]:
    problem = synthetic(n_train=49_990, n_test=91_701)
    x0, _ = start()
    points, z = [], torch.zeros(22, dtype=torch.float64)
    for t in range(PATH + 1):
        x = torch.from_numpy(x0 + 0.05 * t)
        z, _ = newton(problem.train, x, z, tol=1e-12)
        points.append((x, z))
    return problem, points


@pytest.mark.parametrize("name", list(VARIANTS))
def test_ijcnn1_hypergradient(benchmark, record_time, path, name):
    problem, points = path
    make, warm = VARIANTS[name]
    method = make()
    counts: list[int] = []

    def along_the_path() -> None:
        counts.clear()
        adjoint = hg.hypergradient(outer_loss, inner_loss, {"z": points[0][1]}, {"x": points[0][0]},
                                   outer_batch=problem.test, inner_batch=problem.train, method=method).adjoint
        for x, z in points[1:]:
            res = hg.hypergradient(outer_loss, inner_loss, {"z": z}, {"x": x}, outer_batch=problem.test,
                                   inner_batch=problem.train, method=method, warm_start=adjoint if warm else None)
            adjoint = res.adjoint
            counts.append(res.info.hvps)

    torch.set_default_dtype(torch.float64)
    benchmark.pedantic(along_the_path, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["products"] = sum(counts) / len(counts)
    benchmark.extra_info["per_hypergradient_includes"] = f"the first point's solve too: divide by {PATH + 1}"
    record_time(f"ijcnn1/{name}", benchmark)
