"""Each estimator as a function of one bilevel problem: ``(grads, direct, info, checks)``.

``direct`` is ∂_λF, the part every estimator shares; ``checks`` pairs each intermediate quantity's
name with a 0-d "all finite" flag, read once by the caller so that a NaN is reported where it first
appeared without a host synchronisation per quantity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hypergrad import methods as m
from hypergrad import tree
from hypergrad.conditions import Condition, check_condition_method, condition_system
from hypergrad.distributed import Reduce, reduce_parts, reduced
from hypergrad.errors import Interrupted
from hypergrad.linearization import Linearization, Loss, as_scalar_loss, autograd_grads, call_loss, loss_and_grads
from hypergrad.operator import LinearOperator
from hypergrad.solvers import SolveInfo
from hypergrad.user_code import call

Checks = list[tuple[str, torch.Tensor]]
ShouldStop = Callable[[], bool]


@dataclass
class Problem:
    """A bilevel problem at the current point (w, λ)."""

    outer_loss: Loss
    inner_loss: Loss
    params: dict[str, torch.Tensor]
    hparams: dict[str, torch.Tensor]
    outer_batch: Any
    draw_inner: Callable[[], Any]
    reduce: Reduce | None = None
    """Data-parallel: the mean over processes, applied to every gradient and product (:mod:`hypergrad.distributed`)."""
    warm_start: dict[str, torch.Tensor] | None = None
    """A starting guess for the linear solve (the previous call's adjoint), or None."""
    should_stop: ShouldStop | None = None
    """Asked before every product and unrolled step; True raises :class:`~hypergrad.errors.Interrupted`."""


@dataclass
class Estimate:
    grads: dict[str, torch.Tensor]
    direct: dict[str, torch.Tensor]
    value: torch.Tensor
    info: SolveInfo
    checks: Checks
    adjoint: dict[str, torch.Tensor] | None = None


def stop_check(should_stop: ShouldStop | None, estimator: str) -> Callable[[], None]:
    """What to call before each product: raises :class:`Interrupted` once ``should_stop()`` is true."""
    done = [0]

    def before() -> None:
        if should_stop is not None and call(should_stop, "should_stop()", "the check before a product"):
            raise Interrupted(estimator, done[0])
        done[0] += 1

    return before


def first_order(method: m.FirstOrder, p: Problem) -> Estimate:
    value, _, direct = loss_and_grads(p.outer_loss, p.params, p.hparams, p.outer_batch, "outer_loss")
    direct, outer = reduce_parts(p.reduce, "∂_λF and F", direct, {"F": value})
    value = outer["F"]
    checks = [("outer value", torch.isfinite(value)), ("∂_λF", tree.all_finite(direct))]
    return Estimate(direct, direct, value, SolveInfo(method="FirstOrder", gradients=1), checks)


def one_step(method: m.OneStep, p: Problem) -> Estimate:
    batch = p.draw_inner()
    mode = "finite_difference" if method.finite_difference else "reverse"
    lin = Linearization(p.inner_loss, p.params, p.hparams, batch, mode=mode, fd_scale=method.fd_scale)
    (inner_grad,) = reduce_parts(p.reduce, "∂_w f", lin.grad)
    stepped = tree.add(tree.detach(p.params), inner_grad, -method.lr)
    value, v, direct = loss_and_grads(p.outer_loss, stepped, p.hparams, p.outer_batch, "outer_loss")
    v, direct, outer = reduce_parts(p.reduce, "∂_wF, ∂_λF and F at the stepped weights", v, direct, {"F": value})
    value = outer["F"]
    (mixed,) = reduce_parts(p.reduce, "the mixed product", lin.mixed(v))
    grads = tree.add(direct, mixed, -method.lr)
    checks = [("∂_w f", tree.all_finite(inner_grad)), ("∂_wF at the stepped weights", tree.all_finite(v)),
              ("∂_λF", tree.all_finite(direct)), ("mixed product", tree.all_finite(mixed))]
    gradients = 4 if method.finite_difference else 2
    info = SolveInfo(method="OneStep", iterations=1, gradients=gradients, mixed_products=1, lr=method.lr)
    return Estimate(grads, direct, value, info, checks)


def _hessian_system(method: m.ImplicitMethod, inner_loss: Loss, params: dict[str, torch.Tensor],
                    hparams: dict[str, torch.Tensor], draw_inner: Callable[[], Any], reduce: Reduce | None
                    ) -> tuple[LinearOperator, Callable[[dict], dict], Callable[[SolveInfo], SolveInfo]]:
    """The Hessian operator of ``inner_loss`` at (w, λ), its mixed product, and the counts for the record.

    The first inner batch serves the solve and the mixed product. Its linearization (the graph of
    ∂_w f) is built when first needed, so that the stochastic Neumann series, whose terms each build
    and free their own (``operator.sample``), holds at most one such graph at a time.
    """
    # A stochastic Neumann series that shares its last term's batch with the mixed product draws no
    # batch of its own; every other method evaluates the solve and the mixed product on this one.
    shared = bool(getattr(method, "shares_batch", False))
    batch = None if shared else draw_inner()
    built: list[Linearization] = []
    fresh = {"hvps": 0}

    def lin() -> Linearization:
        if not built:
            built.append(Linearization(inner_loss, params, hparams, batch, mode=method.hvp))
        return built[0]

    def fresh_hvp(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fresh["hvps"] += 1
        if shared:  # free the previous term's graph before building this one's: one graph alive at a time
            built.clear()
        term = Linearization(inner_loss, params, hparams, draw_inner(), mode=method.hvp)
        if shared:  # the latest term's graph serves the mixed product
            built.append(term)
        return term.hvp(u)

    hvp = reduced(lambda u: lin().hvp(u), reduce, "a Hessian-vector product")
    def point(fn: Callable[..., Any], who: str) -> Any:
        return call(fn, who, "preparing the linear solve", params, hparams, batch)

    operator = LinearOperator(hvp, hvp, "hessian", sample=reduced(fresh_hvp, reduce, "a Hessian-vector product"),
                              point=None if shared else point)

    def record(info: SolveInfo) -> SolveInfo:
        batches = (0 if shared else 1) + fresh["hvps"]
        own_hvps = 0 if shared else lin().hvps  # a shared term's product is already among the fresh ones
        return info.replace(hvps=own_hvps + fresh["hvps"], mixed_products=1, gradients=batches, inner_batches=batches)

    return operator, lambda v: lin().mixed(v), record


def implicit_solve(method: m.ImplicitMethod, inner_loss: Loss | Condition, params: dict[str, torch.Tensor],
                   hparams: dict[str, torch.Tensor], rhs: dict[str, torch.Tensor],
                   draw_inner: Callable[[], Any], reduce: Reduce | None = None, x0: dict[str, torch.Tensor] | None = None,
                   should_stop: ShouldStop | None = None
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], SolveInfo]:
    """Solve the adjoint system ``A v = rhs`` with ``method``; return ``(v, correction, info)``, dF/dλ = ∂_λF − correction.

    ``x0`` is a starting guess for the iterative methods (:func:`~hypergrad.solvers.warm_start`).

    The operator is the one decision made here: the Hessian (+ the method's damping) of an inner loss,
    with correction (∂²_{λw} f)ᵀ v, or a root or fixed-point condition's transposed Jacobian
    (:func:`~hypergrad.conditions.condition_system`). With ``reduce`` (data-parallel; ``rhs`` already
    reduced), every product and the correction are averaged over processes as they are computed. With
    ``should_stop``, each product first asks it and a true answer raises :class:`Interrupted`.
    """
    if isinstance(inner_loss, Condition):
        operator, correction, record = condition_system(method, inner_loss, params, hparams, draw_inner, reduce)
    else:
        operator, correction, record = _hessian_system(method, inner_loss, params, hparams, draw_inner, reduce)
    if should_stop is not None:
        operator = operator.checked(stop_check(should_stop, type(method).__name__))
    v, info = method.solve(operator, rhs, x0)
    (mixed,) = reduce_parts(reduce, "the mixed product", correction(v))
    return v, mixed, record(info)


def implicit(method: m.ImplicitMethod, p: Problem) -> Estimate:
    value, rhs, direct = loss_and_grads(p.outer_loss, p.params, p.hparams, p.outer_batch, "outer_loss")
    rhs, direct, outer = reduce_parts(p.reduce, "∂_wF, ∂_λF and F", rhs, direct, {"F": value})
    value = outer["F"]
    v, mixed, info = implicit_solve(method, p.inner_loss, p.params, p.hparams, rhs, p.draw_inner, p.reduce,
                                    p.warm_start, p.should_stop)
    grads = tree.sub(direct, mixed)
    info = info.replace(gradients=info.gradients + 1)
    checks = [("outer value", torch.isfinite(value)), ("∂_wF", tree.all_finite(rhs)), ("∂_λF", tree.all_finite(direct)),
              ("linear-system solution v", tree.all_finite(v)), ("mixed product", tree.all_finite(mixed))]
    return Estimate(grads, direct, value, info, checks, adjoint=tree.detach(v))


def unrolled(method: m.Unrolled, p: Problem) -> Estimate:
    lam = tree.detach(p.hparams, True)
    w = tree.detach(p.params, True)
    velocity = tree.zeros_like(w)
    before_step = stop_check(p.should_stop, "Unrolled")
    with torch.enable_grad():
        for t in range(method.steps):
            before_step()
            step = f"unrolled inner step {t + 1} of {method.steps}"
            loss = as_scalar_loss(call_loss(p.inner_loss, "inner_loss", step, w, lam, p.draw_inner()), "inner_loss")
            g = autograd_grads(loss, w, create_graph=True)
            velocity = tree.add(tree.scale(velocity, method.momentum), g) if method.momentum else g
            w = tree.add(w, velocity, -method.lr)
        value = as_scalar_loss(call_loss(p.outer_loss, "outer_loss", "F at the unrolled weights", w, lam, p.outer_batch),
                               "outer_loss")
        grads = autograd_grads(value, lam)
    _, _, direct = loss_and_grads(p.outer_loss, w, p.hparams, p.outer_batch, "outer_loss")
    info = SolveInfo(method="Unrolled", iterations=method.steps, gradients=method.steps + 2,
                     inner_batches=method.steps, lr=method.lr)
    checks = [("outer value", torch.isfinite(value.detach())), ("unrolled hypergradient", tree.all_finite(grads))]
    return Estimate(grads, direct, value.detach(), info, checks)


def estimate(method: m.Method, p: Problem) -> Estimate:
    if isinstance(p.inner_loss, Condition):
        check_condition_method(method)
    stop_check(p.should_stop, type(method).__name__)()  # an estimate asked for past the deadline does not start
    if isinstance(method, m.FirstOrder):
        return first_order(method, p)
    if isinstance(method, m.OneStep):
        return one_step(method, p)
    if isinstance(method, m.Unrolled):
        return unrolled(method, p)
    return implicit(method, p)
