"""The failure branches of the solvers, each on a small system built to reach it."""

from __future__ import annotations

import pytest
import torch

from hypergrad import solvers


def _matvec(a: torch.Tensor):
    return lambda v: {"x": a @ v["x"]}


def test_bicgstab_reports_a_breakdown_on_a_rotation():
    # A 90° rotation: s = r − αAr is orthogonal to As, so ω = tᵀs/tᵀt vanishes in the first iteration.
    a = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    _, info = solvers.bicgstab(_matvec(a), {"x": torch.tensor([1.0, 0.0])}, max_iter=10, tol=1e-10)
    assert info.extra["breakdown"] is True and not info.converged
    assert "broke down" in info.message and "GMRES" in info.message


def test_bicgstab_records_no_breakdown_when_it_converges():
    a = torch.tensor([[3.0, 1.0], [0.5, 2.0]])
    x, info = solvers.bicgstab(_matvec(a), {"x": torch.tensor([1.0, 2.0])}, max_iter=10, tol=1e-12)
    assert info.converged and info.extra["breakdown"] is False
    assert torch.allclose(x["x"], torch.linalg.solve(a, torch.tensor([1.0, 2.0])), atol=1e-10)


def test_normal_cg_names_a_singular_matrix():
    a = torch.diag(torch.tensor([1.0, 0.0]))  # b has a component outside the range of A
    _, info = solvers.normal_cg(_matvec(a), _matvec(a.T), {"x": torch.tensor([1.0, 1.0])}, max_iter=10, tol=1e-12)
    assert not info.converged and "singular" in info.message and not info.negative_curvature


def test_cg_flags_a_residual_ten_times_its_start_as_diverged():
    # pᵀAp = 0.001 > 0 on an indefinite matrix: the first step is huge and the residual explodes.
    a = torch.diag(torch.tensor([1.0, -0.999]))
    _, info = solvers.conjugate_gradient(_matvec(a), {"x": torch.tensor([1.0, 1.0])}, max_iter=1, tol=1e-12)
    assert info.residual_norm > 10 * info.residual_trace[0]
    assert info.diverged and not info.converged


def test_cg_stops_at_the_absolute_tolerance():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g))
    a = q @ torch.diag(torch.linspace(0.5, 20.0, 30)) @ q.T
    b = {"x": torch.randn(30, generator=g)}
    _, loose = solvers.conjugate_gradient(_matvec(a), b, max_iter=200, tol=0.0, atol=1e-3)
    _, tight = solvers.conjugate_gradient(_matvec(a), b, max_iter=200, tol=0.0, atol=1e-10)
    assert loose.converged and tight.converged
    assert loose.residual_norm <= 1e-3 < loose.residual_trace[-2]
    assert loose.iterations < tight.iterations and tight.residual_norm <= 1e-10


@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_zero_tolerances_skip_the_host_reads_and_still_solve_the_system(solver):
    a = torch.diag(torch.linspace(1.0, 3.0, 6))
    b = {"x": torch.ones(6)}
    fn = solvers.conjugate_gradient if solver == "cg" else solvers.minres
    x, _ = fn(_matvec(a), b, max_iter=40, tol=0.0)
    assert torch.allclose(x["x"], 1.0 / torch.linspace(1.0, 3.0, 6), atol=1e-12)
