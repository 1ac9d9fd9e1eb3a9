"""``hg.WeightDecay``: an inner loss plus (μ/2)‖w‖², with the L2 term taken analytically by the products."""

from __future__ import annotations

import pytest

import hypergrad as hg
from tests.problems import Ridge, rel_err

DECAY = 0.7


def _explicit(inner):  # type: ignore[no-untyped-def]
    """The same objective with the term written into the loss, differentiated by autograd."""
    return lambda p, h, b: inner(p, h, b) + 0.5 * DECAY * sum((v * v).sum() for v in p.values())


@pytest.mark.parametrize("method", [hg.Exact(), hg.Exact(hvp="forward"), hg.Exact(hvp="finite_difference"),
                                    hg.CG(max_iter=100, tol=1e-13), hg.MINRES(max_iter=100, tol=1e-13)],
                         ids=lambda m: f"{type(m).__name__}-{m.hvp}")
def test_weight_decay_is_a_ridge_term_added_to_every_lambda(method: hg.Exact) -> None:
    # μ/2‖w‖² shifts every λ_j by μ, so the closed form at λ + μ is the answer.
    prob = Ridge()
    prob.lam = prob.lam + DECAY
    w = {"w": prob.solution()}
    res = hg.hypergradient(Ridge.outer, hg.WeightDecay(Ridge.inner, DECAY), w, {"lam": prob.lam - DECAY},
                           outer_batch=prob.val, inner_batch=prob.train, method=method)
    assert rel_err(res.grads["lam"], prob.hypergradient()) < 1e-6


@pytest.mark.parametrize("method", [hg.OneStep(lr=0.05, finite_difference=False), hg.OneStep(lr=0.05),
                                    hg.Neumann(terms=3, lr=0.01), hg.StochasticNeumann(terms=2, lr=0.01),
                                    hg.Unrolled(steps=3, lr=0.01)], ids=lambda m: type(m).__name__)
def test_weight_decay_matches_the_term_written_into_the_loss(method: object) -> None:
    prob = Ridge()
    w = {"w": prob.solution() + 0.1}
    args = (w, {"lam": prob.lam})
    kwargs = {"outer_batch": prob.val, "inner_batch": prob.train, "method": method}
    got = hg.hypergradient(Ridge.outer, hg.WeightDecay(Ridge.inner, DECAY), *args, **kwargs)
    want = hg.hypergradient(Ridge.outer, _explicit(Ridge.inner), *args, **kwargs)
    assert rel_err(got.grads["lam"], want.grads["lam"]) < 1e-9


@pytest.mark.parametrize("decay", [-1.0, float("nan"), float("inf"), "0.1", True])
def test_weight_decay_rejects_a_negative_or_non_finite_coefficient(decay: object) -> None:
    with pytest.raises(hg.HypergradInputError, match=r"WeightDecay\(decay=.*expected a finite number >= 0"):
        hg.WeightDecay(Ridge.inner, decay)  # type: ignore[arg-type]
