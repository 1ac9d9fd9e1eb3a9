"""Bad input and bad numbers: one-line errors that name the value, nothing written, no silent NaN."""

from __future__ import annotations

import pytest
import torch

import hypergrad as hg
from tests.problems import PenalisedRidge, Ridge

ALL_METHODS = [hg.FirstOrder(), hg.OneStep(lr=0.01), hg.OneStep(lr=0.01, finite_difference=False), hg.Exact(), hg.CG(),
               hg.MINRES(), hg.Neumann(terms=3, lr=0.01), hg.StochasticNeumann(terms=3, lr=0.01),
               hg.FixedPoint(lr=0.01, max_iter=5), hg.Unrolled(steps=3, lr=0.01)]


def _call(prob, method=None, outer=None, inner=None, params=None, hparams=None, fn=hg.hypergradient):
    return fn(outer or prob.outer, inner or prob.inner, {"w": prob.solution()} if params is None else params,
              {"lam": prob.lam} if hparams is None else hparams, outer_batch=prob.val, inner_batch=prob.train,
              method=hg.CG() if method is None else method)


def _one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def _scalar_reference(prob: PenalisedRidge, method: object) -> torch.Tensor:
    """Each estimator's value for a 0-d λ on penalised ridge, by hand (the per-feature formula summed)."""
    w = prob.solution()
    a = prob.matrix()
    direct = 0.5 * prob.c * (w**2).sum()
    if isinstance(method, hg.FirstOrder):
        return direct
    if isinstance(method, (hg.Exact, hg.CG, hg.MINRES)):
        return prob.hypergradient()
    if isinstance(method, (hg.Neumann, hg.FixedPoint)):  # partial sums γ Σ_{k<K+1} (I − γA)^k ∇_wF
        terms = method.terms if isinstance(method, hg.Neumann) else method.max_iter - 1
        step = torch.eye(len(w)) - method.lr * a
        v = method.lr * sum(torch.linalg.matrix_power(step, k) for k in range(terms + 1)) @ prob.outer_grad(w)
        return direct - (w * v).sum()
    lam = prob.lam.clone().requires_grad_()
    wt = w.clone().requires_grad_()
    steps = 1 if isinstance(method, hg.OneStep) else method.steps
    for _ in range(steps):
        g = torch.autograd.grad(prob.inner({"w": wt}, {"lam": lam}, prob.train), wt, create_graph=True)[0]
        wt = wt - method.lr * g
    return torch.autograd.grad(prob.outer({"w": wt}, {"lam": lam}, prob.val), lam)[0]


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda m: type(m).__name__ + str(getattr(m, "finite_difference", "")))
def test_every_estimator_gives_a_zero_dimensional_hyperparameter_its_value(method):
    prob = PenalisedRidge(per_feature=False)
    res = _call(prob, method)
    assert res.grads["lam"].shape == ()
    expected = _scalar_reference(prob, method)
    rel = 1e-6 if getattr(method, "finite_difference", False) else 1e-9
    assert float(res.grads["lam"]) == pytest.approx(float(expected), rel=rel)


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda m: type(m).__name__)
def test_a_nan_in_the_outer_objective_raises_naming_estimator_and_quantity(method):
    prob = Ridge()

    def outer(p, h, b):
        return Ridge.outer(p, h, b) * torch.tensor(float("nan"))

    with pytest.raises(hg.NonFiniteError) as exc:
        _call(prob, method, outer=outer)
    assert exc.value.estimator == type(method).__name__
    assert type(method).__name__ in _one_line(exc)


@pytest.mark.parametrize("method", [hg.CG(), hg.Neumann(terms=3, lr=0.01), hg.StochasticNeumann(terms=3, lr=0.01),
                                    hg.MINRES()], ids=lambda m: type(m).__name__)
def test_an_inf_in_the_inner_curvature_is_reported_as_the_solve(method):
    prob = Ridge()

    def inner(p, h, b):
        return Ridge.inner(p, h, b) + torch.tensor(float("inf")) * (p["w"] ** 4).sum()

    with pytest.raises(hg.NonFiniteError) as exc:
        _call(prob, method, inner=inner)
    assert exc.value.quantity in ("linear-system solution v", "mixed product")


def test_backward_writes_nothing_when_the_hypergradient_is_not_finite():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_()
    lam.grad = torch.full_like(lam, 7.0)
    outer = lambda p, h, b: Ridge.outer(p, h, b) / torch.tensor(0.0)  # noqa: E731
    with pytest.raises(hg.NonFiniteError):
        _call(prob, hparams={"lam": lam}, outer=outer, fn=hg.backward)
    assert torch.equal(lam.grad, torch.full_like(lam, 7.0))


def test_backward_refuses_a_non_leaf_hyperparameter():
    prob = Ridge()
    lam = prob.lam.clone().requires_grad_() * 1.0
    with pytest.raises(hg.HypergradInputError, match="hparams\\['lam'\\] is not a leaf") as exc:
        _call(prob, hparams={"lam": lam}, fn=hg.backward)
    _one_line(exc)


def test_unrolled_refuses_a_non_scalar_loss_in_one_line():
    prob = Ridge()
    with pytest.raises(hg.HypergradInputError, match=r"inner_loss returned \(6,\); expected a scalar tensor") as exc:
        _call(prob, hg.Unrolled(steps=2, lr=0.01), inner=lambda p, h, b: p["w"] ** 2)
    _one_line(exc)


@pytest.mark.parametrize("kwargs,match", [
    ({"params": {"w": [1.0, 2.0]}}, r"params\['w'\] is a list; expected a torch.Tensor"),
    ({"params": {}}, "params must be a non-empty dict"),
    ({"hparams": torch.ones(6)}, "hparams must be a non-empty dict of tensors, got Tensor"),
    ({"hparams": {"lam": torch.ones(6, dtype=torch.int64)}}, r"hparams\['lam'\] has dtype torch.int64; expected a floating"),
    ({"method": "cg"}, "method='cg' is not a method it accepts; expected one of FirstOrder"),
    ({"outer": 3.0}, "outer_loss is a float; expected a callable"),
    ({"outer": lambda p, h, b: (p["w"] - 1.0) ** 2}, r"outer_loss returned \(6,\); expected a scalar tensor"),
    ({"inner": lambda p, h, b: 0.5}, "inner_loss returned float; expected a scalar tensor"),
])
def test_bad_arguments_get_a_one_line_error_naming_them(kwargs, match):
    prob = Ridge()
    with pytest.raises(hg.HypergradInputError, match=match) as exc:
        _call(prob, **kwargs)
    _one_line(exc)


@pytest.mark.parametrize("make,match", [
    (lambda: hg.CG(max_iter=0), r"CG\(max_iter=0\): expected an integer >= 1"),
    (lambda: hg.CG(tol=-1.0), r"CG\(tol=-1.0\): expected a finite number >= 0"),
    (lambda: hg.CG(damping=float("nan")), r"CG\(damping=nan\)"),
    (lambda: hg.CG(hvp="double"), "hvp='double' is not a Hessian-vector product mode"),
    (lambda: hg.Neumann(terms=-1), r"Neumann\(terms=-1\): expected an integer >= 0"),
    (lambda: hg.StochasticNeumann(lr=0.0), r"StochasticNeumann\(lr=0.0\): expected a finite number > 0"),
    (lambda: hg.OneStep(lr=-0.1), r"OneStep\(lr=-0.1\)"),
    (lambda: hg.Unrolled(steps=2.5), r"Unrolled\(steps=2.5\): expected an integer >= 1"),
    (lambda: hg.Unrolled(momentum=1.0), r"Unrolled\(momentum=1.0\): expected a number in \[0, 1\)"),
    (lambda: hg.GMRES(restart=0), r"GMRES\(restart=0\): expected an integer >= 1"),
    (lambda: hg.GMRES(tol=float("inf")), r"GMRES\(tol=inf\): expected a finite number >= 0"),
    (lambda: hg.BiCGSTAB(check_every=0), r"BiCGSTAB\(check_every=0\): expected an integer >= 1"),
    (lambda: hg.NormalCG(max_iter=True), r"NormalCG\(max_iter=True\): expected an integer >= 1"),
    (lambda: hg.NormalCG(hvp="double"), "hvp='double' is not a Hessian-vector product mode"),
    (lambda: hg.FixedPoint(check_every=-1), r"FixedPoint\(check_every=-1\): expected an integer >= 1"),
])
def test_bad_method_options_are_refused_at_construction(make, match):
    with pytest.raises(hg.HypergradInputError, match=match) as exc:
        make()
    _one_line(exc)


def test_a_preconditioner_with_mismatched_keys_or_shapes_is_named():
    prob = Ridge()
    with pytest.raises(hg.HypergradInputError, match=r"CG preconditioner output: keys differ \(missing \['w'\]") as exc:
        _call(prob, hg.CG(preconditioner=lambda r: {"v": r["w"]}))
    _one_line(exc)
    with pytest.raises(hg.HypergradInputError, match=r"CG preconditioner output\['w'\] has shape \(3,\); expected \(6,\)"):
        _call(prob, hg.CG(preconditioner=lambda r: {"w": r["w"][:3]}))


def test_a_diverging_neumann_series_warns_and_says_so_in_its_record():
    prob = Ridge()
    with pytest.warns(RuntimeWarning, match="series terms grow"):
        res = _call(prob, hg.Neumann(terms=10, lr=1.0))
    assert res.info.diverged and res.info.converged is None


def test_neumann_auto_step_comes_from_the_largest_eigenvalue():
    prob = Ridge()
    res = _call(prob, hg.Neumann(terms=5, lr="auto"))
    lam_max = float(torch.linalg.eigvalsh(prob.matrix()).max())
    assert res.info.lr == pytest.approx(1.0 / lam_max, rel=1e-3)  # 20 power iterations
    assert not res.info.diverged
