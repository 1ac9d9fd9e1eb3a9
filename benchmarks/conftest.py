"""Session fixtures for the benchmarks (solved problems, reference hypergradients) and the ratio table.

Each benchmark hands its fastest round to ``record_time``; at the end of the run
``pytest_terminal_summary`` prints the ratios the performance targets are stated in, so that
``make bench`` shows them next to pytest-benchmark's own table. The minimum over rounds is used
because other jobs share the machine: the minimum is the least disturbed run of each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import hypergrad as hg
from benchmarks._problems import Bilevel, mlp, softmax_regression, solve_inner

# Fastest round per benchmark name, filled while the benchmarks run.
_TIMES: dict[str, float] = {}
# Relative error against the reference (or the exact HVP), where the benchmark measured one.
_ERRORS: dict[str, float] = {}

# (label, numerator, denominator, target): numerator time ≤ target × denominator time.
TARGETS: list[tuple[str, str, str, float]] = [
    *[(f"{p} HVP {mode} / gradient", f"{p}/hvp-{mode}", f"{p}/gradient", 2.0)
      for p in ("softmax", "mlp") for mode in ("reverse", "reverse+graph", "forward", "finite_difference")],
    ("softmax CG-50 / torchopt CG-50", "softmax/CG-50", "softmax/torchopt-CG-50", 0.9),
    ("softmax CG-50 / jaxopt CG-50", "softmax/CG-50", "softmax/jaxopt-CG-50", 0.8),
    ("softmax CG-50 / matmul floor", "softmax/CG-50", "softmax/matmul-floor-50", 1.2),
    # Issue 16's levers on an ijcnn1-sized problem: each must make a hypergradient cheaper than plain cold CG.
    *[(f"ijcnn1 {name} / CG cold", f"ijcnn1/{name}", "ijcnn1/CG cold", 1.0)
      for name in ("CG warm", "CG+Jacobi cold", "CG+Jacobi warm", "CG+Hutchinson-Jacobi warm", "Auto (dense, n=22)")],
]

PROBLEM_VERSION = "v1"  # bump when a problem's definition changes, to invalidate the cached solutions


def _cached_problem(config: pytest.Config, make: Callable[..., Bilevel]) -> Bilevel:
    """``make()`` solved, with the solution kept in pytest's cache: the MLP's inner solve takes minutes."""
    problem = make(solve=False)
    path = Path(config.cache.mkdir("hypergrad-bench")) / f"{problem.name}-{PROBLEM_VERSION}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        problem.params, problem.grad_norm, problem.curvature = saved["params"], saved["grad_norm"], saved["curvature"]
    else:
        solve_inner(problem)
        torch.save({"params": problem.params, "grad_norm": problem.grad_norm, "curvature": problem.curvature}, path)
    return problem


@pytest.fixture(scope="session", params=["softmax", "mlp"])
def problem(request: pytest.FixtureRequest) -> Bilevel:
    return request.getfixturevalue(f"{request.param}_problem")


@pytest.fixture(scope="session")
def softmax_problem(pytestconfig: pytest.Config) -> Bilevel:
    return _cached_problem(pytestconfig, softmax_regression)


@pytest.fixture(scope="session")
def mlp_problem(pytestconfig: pytest.Config) -> Bilevel:
    return _cached_problem(pytestconfig, mlp)


@pytest.fixture(scope="session")
def reference() -> Callable[[Bilevel], dict[str, torch.Tensor]]:
    """The tight-CG hypergradient of a problem (residual ≤ 1e-12·‖∂_wF‖), computed once per problem.

    ``Exact()`` would need one HVP per inner parameter (7,850 / 101,770) and a dense matrix that size.
    """
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(problem: Bilevel) -> dict[str, torch.Tensor]:
        if problem.name not in cache:
            res = problem.hypergradient(hg.CG(max_iter=3000, tol=1e-12))
            assert res.info.converged, res.info.message
            cache[problem.name] = res.grads
        return cache[problem.name]

    return get


@pytest.fixture
def record_time() -> Callable[[str, object], None]:
    """``record_time(name, benchmark)``: keep that benchmark's fastest round for the ratio table."""
    def record(name: str, benchmark: object) -> None:
        meta = getattr(benchmark, "stats", None)
        if meta is not None:  # None under --benchmark-disable
            _TIMES[name] = meta.stats.min
        if "rel_error" in benchmark.extra_info:
            _ERRORS[name] = benchmark.extra_info["rel_error"]

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = [(label, _TIMES[num] / _TIMES[den], target) for label, num, den, target in TARGETS
            if num in _TIMES and den in _TIMES]
    if not rows:
        return
    tr = terminalreporter
    tr.section("hypergrad ratio targets (fastest rounds, same process)")
    tr.write_line(f"{'ratio':<42} {'measured':>9} {'target':>8}  verdict")
    for label, ratio, target in rows:
        tr.write_line(f"{label:<42} {ratio:>9.2f} {'<= ' + format(target, '.1f'):>8}  {'met' if ratio <= target else 'MISSED'}")
    tr.write_line(f"{'benchmark':<42} {'fastest s':>9} {'rel. error':>10}")
    for name in sorted(_TIMES):
        tr.write_line(f"{name:<42} {_TIMES[name]:>9.4f} {_ERRORS.get(name, float('nan')):>10.2e}")
