"""The benchmarks' ``nn.Linear`` layout of softmax regression is the same problem, transposed: every
contender of the CG side-by-side (ours, torchopt, jaxopt) gives the transposed hypergradient there,
and the layout's matmul floor runs the same products."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("jaxopt")
pytest.importorskip("torchopt")

from benchmarks._problems import Bilevel, linear_layout, matmul_floor, softmax_logits, solve_inner  # noqa: E402
from benchmarks.bench_core import CONTENDERS, contender, layout_products  # noqa: E402


@pytest.fixture(scope="module")
def small_softmax() -> Bilevel:
    """A 40×12, 3-class softmax regression solved to a stationary point, named like the benchmark's."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 12, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 3, (60,), generator=gen)
    params = {"W": torch.zeros(12, 3, dtype=torch.float64), "b": torch.zeros(3, dtype=torch.float64)}
    hparams = {"W": np.log(0.1) + 0.5 * torch.randn(12, 3, dtype=torch.float64, generator=gen)}
    problem = Bilevel("softmax", softmax_logits, params, hparams, (x[:40], y[:40]), (x[40:], y[40:]), lbfgs_iter=100)
    solve_inner(problem)
    return problem


@pytest.mark.parametrize("who", [c for c in CONTENDERS if c != "matmul-floor"])
def test_each_contender_gives_the_transposed_hypergradient_in_the_linear_layout(small_softmax, who):
    linear = linear_layout(small_softmax)
    assert linear.params["W"].shape == (3, 12) and linear.params["W"].is_contiguous()
    plain = contender(small_softmax, who)()["W"]
    transposed = contender(linear, who)()["W"]
    assert plain.abs().max() > 1e-6  # not trivially zero
    torch.testing.assert_close(transposed, plain.T, rtol=1e-6, atol=1e-9)


def test_matmul_floor_and_layout_products_agree_across_layouts(small_softmax):
    linear = linear_layout(small_softmax)
    torch.testing.assert_close(matmul_floor(linear, 3)(), matmul_floor(small_softmax, 3)().T)
    products = {name: fn() for name, fn in layout_products(small_softmax.train[0], classes=3).items()}
    torch.testing.assert_close(products["F.linear(x, W_t)"], products["x @ W"])
    torch.testing.assert_close(products["G.T @ x"], products["x.T @ G"].T)
