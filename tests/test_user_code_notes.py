"""An exception raised inside the user's code keeps its type and traceback and gains a note saying where
hypergrad called it: which callable, from which estimator and step, with which batch."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import pytest
import torch

import hypergrad as hg
from hypergrad.user_code import describe
from tests.problems import Ridge

PROBLEM = Ridge(n=12, d=3)  # built at import, so in float32 whatever the tests' default dtype
PARAMS = {"w": PROBLEM.solution()}
HPARAMS = {"lam": PROBLEM.lam}


class Boom(RuntimeError):
    """The user's own exception type, which must reach the caller unchanged."""


def _notes(err: BaseException) -> str:
    return "\n".join(getattr(err, "__notes__", []))


def _raises_in(name: str) -> Callable[..., Any]:
    def fail(*args: Any) -> Any:
        raise Boom(name)

    fail.__name__ = name
    return fail


def test_a_forgotten_inner_batch_is_named_in_the_note() -> None:
    with pytest.raises(TypeError, match="NoneType") as info:
        hg.hypergradient(PROBLEM.outer, PROBLEM.inner, PARAMS, HPARAMS, outer_batch=PROBLEM.val, inner_batch=None)
    notes = _notes(info.value)
    assert "inner_loss(params, hparams, batch) with inner_batch=None" in notes
    assert "hypergradient(method=CG)" in notes
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "inner"  # the user's line is still last


@pytest.mark.parametrize("method", [hg.FirstOrder(), hg.OneStep(), hg.Exact(), hg.CG(max_iter=3), hg.MINRES(max_iter=3),
                                    hg.Neumann(terms=2), hg.StochasticNeumann(terms=2), hg.FixedPoint(max_iter=3),
                                    hg.Unrolled(steps=2)], ids=lambda m: type(m).__name__)
def test_every_estimator_names_itself_and_the_outer_batch(method: hg.methods.Method) -> None:
    with pytest.raises(Boom) as info:
        hg.hypergradient(_raises_in("outer"), PROBLEM.inner, PARAMS, HPARAMS, outer_batch=PROBLEM.val,
                         inner_batch=PROBLEM.train, method=method)
    notes = _notes(info.value)
    assert f"hypergradient(method={type(method).__name__})" in notes
    assert "outer_loss(params, hparams, batch) with outer_batch=tuple(Tensor[6, 3] float32, Tensor[6] float32)" in notes


@pytest.mark.parametrize(("method", "step"), [
    (hg.CG(max_iter=3), "∂_w f, whose graph"),
    (hg.CG(max_iter=3, hvp="forward"), "forward-mode"),
    (hg.CG(max_iter=3, hvp="finite_difference"), "∂_w f"),
    (hg.OneStep(finite_difference=True), "∂_w f"),
    (hg.Unrolled(steps=3), "unrolled inner step 1 of 3"),
], ids=["reverse", "forward", "finite-difference", "one-step", "unrolled"])
def test_the_inner_loss_note_names_the_step(method: hg.methods.Method, step: str) -> None:
    with pytest.raises(Boom) as info:
        hg.hypergradient(PROBLEM.outer, _raises_in("inner"), PARAMS, HPARAMS, outer_batch=PROBLEM.val,
                         inner_batch=PROBLEM.train, method=method)
    notes = _notes(info.value)
    assert "inner_loss(params, hparams, batch) with inner_batch=tuple(" in notes and step in notes, notes


def test_a_failing_batch_sampler_is_named() -> None:
    draws = []

    def sample() -> Any:
        draws.append(1)
        if len(draws) == 2:
            raise StopIteration  # e.g. an exhausted data loader iterator
        return PROBLEM.train

    with pytest.raises(StopIteration) as info:
        hg.hypergradient(PROBLEM.outer, PROBLEM.inner, PARAMS, HPARAMS, outer_batch=PROBLEM.val, inner_batch=sample,
                         method=hg.StochasticNeumann(terms=2))
    notes = _notes(info.value)
    assert "inner_batch() (the batch sampler)" in notes and "hypergradient(method=StochasticNeumann)" in notes


def test_a_failing_preconditioner_is_named() -> None:
    with pytest.raises(Boom) as info:
        hg.hypergradient(PROBLEM.outer, PROBLEM.inner, PARAMS, HPARAMS, outer_batch=PROBLEM.val,
                         inner_batch=PROBLEM.train, method=hg.CG(preconditioner=_raises_in("precondition")))
    assert "CG preconditioner(r)" in _notes(info.value)


def test_implicit_names_its_backward_pass() -> None:
    hparams = {"lam": PROBLEM.lam.clone().requires_grad_()}
    calls = []

    def inner(p: dict[str, torch.Tensor], h: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
        calls.append(1)
        return PROBLEM.inner(p, h, batch)

    w = hg.implicit(inner, PARAMS, hparams, None, method=hg.CG(max_iter=3))
    assert not calls  # the forward pass does not call the loss; the backward pass does
    with pytest.raises(TypeError) as info:
        PROBLEM.outer(w, hparams, PROBLEM.val).backward()
    notes = _notes(info.value)
    assert "the backward pass of implicit(method=CG)" in notes and "inner_batch=None" in notes


def test_the_batch_description_is_short() -> None:
    assert describe(None) == "None"
    assert describe((torch.zeros(64, 3, dtype=torch.float32), torch.zeros(64, dtype=torch.long))) == (
        "tuple(Tensor[64, 3] float32, Tensor[64] int64)")
    assert describe({"x": 1, "y": 2}) == "dict(keys=['x', 'y'])"
    assert describe([1, 2, 3, 4]) == "list(1, 2, 3, ...)"
    assert describe("a" * 100) == "str object"


# A root or fixed-point condition in place of inner_loss: its map F (or T) is the user's code too.

def _stationarity(p: dict[str, torch.Tensor], h: dict[str, torch.Tensor], batch: Any) -> dict[str, torch.Tensor]:
    """The ridge's ∂_w f, a root at the solution; it indexes its batch."""
    X, y = batch[0], batch[1]
    return {"w": X.T @ (X @ p["w"] - y) + h["lam"] * p["w"]}


@pytest.mark.parametrize("method", [hg.GMRES(max_iter=3), hg.GMRES(max_iter=3, hvp="forward"), hg.BiCGSTAB(max_iter=3),
                                    hg.NormalCG(max_iter=3), hg.FixedPoint(max_iter=3), hg.Exact()],
                         ids=lambda m: f"{type(m).__name__}-{m.hvp}")
def test_a_root_map_given_no_inner_batch_is_named_with_the_solver(method: hg.methods.Method) -> None:
    with pytest.raises(TypeError, match="NoneType") as info:
        hg.hypergradient(PROBLEM.outer, hg.Root(_stationarity), PARAMS, HPARAMS, outer_batch=PROBLEM.val,
                         inner_batch=None, method=method)
    notes = _notes(info.value)
    assert "Root(F): _stationarity(params, hparams, batch) with inner_batch=None" in notes, notes
    assert f"hypergradient(method={type(method).__name__})" in notes and "F(w, λ)" in notes, notes
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "_stationarity"


def test_a_fixed_point_map_raising_value_error_keeps_its_type_and_names_t() -> None:
    def fail(p: Any, h: Any, batch: Any) -> Any:
        raise ValueError("the user's own message")

    with pytest.raises(ValueError, match="the user's own message") as info:
        hg.hypergradient(PROBLEM.outer, hg.FixedPointMap(lambda p, h, b: fail(p, h, b)), PARAMS, HPARAMS,
                         outer_batch=PROBLEM.val, inner_batch=PROBLEM.train, method=hg.BiCGSTAB(max_iter=3))
    assert type(info.value) is ValueError and not isinstance(info.value, hg.HypergradInputError)
    notes = _notes(info.value)
    assert "FixedPointMap(T): T(params, hparams, batch) with inner_batch=tuple(Tensor[12, 3] float32" in notes, notes
    assert "hypergradient(method=BiCGSTAB)" in notes and "T(w, λ), whose graph" in notes, notes


def test_a_root_map_failing_in_a_jacobian_vector_product_is_named() -> None:
    calls = []

    def flaky(p: dict[str, torch.Tensor], h: dict[str, torch.Tensor], batch: Any) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) > 1:  # the residual evaluation succeeds; NormalCG's first JVP re-evaluates F
            raise Boom("second call")
        return _stationarity(p, h, batch)

    with pytest.raises(Boom) as info:
        hg.hypergradient(PROBLEM.outer, hg.Root(flaky), PARAMS, HPARAMS, outer_batch=PROBLEM.val,
                         inner_batch=PROBLEM.train, method=hg.NormalCG(max_iter=3))
    notes = _notes(info.value)
    assert "Root(F): flaky(params, hparams, batch)" in notes and "Jacobian-vector product (∂_wF)v" in notes, notes
    assert "hypergradient(method=NormalCG)" in notes


def test_the_outer_loss_beside_a_condition_is_named() -> None:
    with pytest.raises(Boom) as info:
        hg.hypergradient(_raises_in("outer"), hg.Root(_stationarity), PARAMS, HPARAMS, outer_batch=None,
                         inner_batch=PROBLEM.train, method=hg.GMRES(max_iter=3))
    notes = _notes(info.value)
    assert "outer_loss(params, hparams, batch) with outer_batch=None" in notes and "hypergradient(method=GMRES)" in notes


def test_backward_and_implicit_name_the_condition() -> None:
    hparams = {"lam": PROBLEM.lam.clone().requires_grad_()}
    with pytest.raises(TypeError) as info:
        hg.backward(PROBLEM.outer, hg.Root(_stationarity), PARAMS, hparams, outer_batch=PROBLEM.val,
                    method=hg.GMRES(max_iter=3))
    assert "Root(F): _stationarity" in _notes(info.value) and hparams["lam"].grad is None
    w = hg.implicit(hg.FixedPointMap(_stationarity), PARAMS, hparams, None, method=hg.GMRES(max_iter=3))
    with pytest.raises(TypeError) as info:
        PROBLEM.outer(w, hparams, PROBLEM.val).backward()
    notes = _notes(info.value)
    assert "FixedPointMap(T): _stationarity(params, hparams, batch) with inner_batch=None" in notes, notes
    assert "the backward pass of implicit(method=GMRES)" in notes, notes
