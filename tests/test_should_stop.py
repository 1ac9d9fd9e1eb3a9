"""``should_stop``: a caller's deadline holds inside a hypergradient's solve.

The hook is asked before the estimate starts and before every product; the tests count the products
the solver computes (its own record, ``info.hvps``) and check that a stop after k products raises
:class:`hypergrad.Interrupted` saying k, that nothing is written, and that a hook which never fires
changes nothing.
"""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import Ridge

pytestmark = pytest.mark.float32

SOLVES = [hg.CG(max_iter=40, tol=1e-14), hg.MINRES(max_iter=40, tol=1e-14), hg.Neumann(terms=12, lr=0.01),
          hg.StochasticNeumann(terms=12, lr=0.01), hg.FixedPoint(lr=0.01, max_iter=30), hg.GMRES(max_iter=30),
          hg.Exact(), hg.Unrolled(steps=12, lr=0.01), hg.Neumann(terms=5, lr="auto")]


def _after(calls: int) -> tuple[list[int], object]:
    """A hook that answers True from its ``calls + 1``-th question on, and the count of questions."""
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] > calls

    return asked, should_stop


def _run(prob: Ridge, method: object, should_stop: object = None, fn: object = hg.hypergradient) -> hg.Hypergradient:
    return fn(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam}, outer_batch=prob.val,  # type: ignore
              inner_batch=prob.train, method=method, should_stop=should_stop)


@pytest.mark.parametrize("method", SOLVES, ids=lambda m: f"{type(m).__name__}({getattr(m, 'lr', '')})")
def test_a_hook_that_never_fires_changes_nothing(method: object) -> None:
    prob = Ridge()
    asked, never = _after(10**9)
    plain, hooked = _run(prob, method), _run(prob, method, never)
    assert torch.equal(plain.grads["lam"], hooked.grads["lam"])
    steps = hooked.info.iterations if isinstance(method, hg.Unrolled) else hooked.info.hvps
    assert asked[0] == 1 + steps  # once before starting, then once per product (or unrolled step)


@pytest.mark.parametrize("method", SOLVES, ids=lambda m: f"{type(m).__name__}({getattr(m, 'lr', '')})")
@pytest.mark.parametrize("products", [0, 3])
def test_a_stop_after_k_products_raises_interrupted_saying_k(method: object, products: int) -> None:
    prob = Ridge()
    _, stop = _after(1 + products)  # the question before the estimate starts, then one per product
    with pytest.raises(hg.Interrupted) as err:
        _run(prob, method, stop)
    assert err.value.products == products and err.value.estimator == type(method).__name__
    assert "\n" not in str(err.value) and f"after {products} products" in str(err.value)


def test_a_spent_deadline_stops_before_the_first_gradient() -> None:
    prob = Ridge()
    evaluated: list[str] = []

    def outer(p, h, b):  # type: ignore[no-untyped-def]
        evaluated.append("F")
        return Ridge.outer(p, h, b)

    with pytest.raises(hg.Interrupted, match="after 0 products"):
        hg.hypergradient(outer, prob.inner, {"w": prob.solution()}, {"lam": prob.lam}, outer_batch=prob.val,
                         inner_batch=prob.train, method=hg.FirstOrder(), should_stop=lambda: True)
    assert evaluated == []


def test_backward_writes_no_grad_when_stopped() -> None:
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_(True)
    lam.grad = torch.full_like(lam, 7.0)
    with pytest.raises(hg.Interrupted):
        hg.backward(prob.outer, prob.inner, {"w": prob.solution()}, {"lam": lam}, outer_batch=prob.val,
                    inner_batch=prob.train, method=hg.CG(), should_stop=_after(3)[1])
    assert torch.equal(lam.grad, torch.full_like(lam, 7.0))


def test_implicit_stops_its_backward_solve() -> None:
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_(True)
    w = hg.implicit(prob.inner, {"w": prob.solution()}, {"lam": lam}, prob.train, method=hg.CG(),
                    should_stop=_after(2)[1])
    with pytest.raises(hg.Interrupted, match="after 2 products"):
        prob.outer(w, {"lam": lam}, prob.val).backward()
    assert lam.grad is None


def test_should_stop_must_be_callable() -> None:
    with pytest.raises(hg.HypergradInputError, match="should_stop=5: expected None or a callable"):
        _run(Ridge(), hg.CG(), 5)
