"""The architecture step's value: α.grad after ``arch_step`` equals the library's hypergradient of each
method's documented estimator on the same batches, and α steps with the weights frozen lower the
validation loss.

The reference losses are written here from the search's definition (validation cross-entropy; training
cross-entropy plus (wd/2)‖w‖²), and each method's estimator is spelled out from docs/nas.md, so a sign
flip in the step, a swapped method map or a wrong inner objective all change the compared value.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import hypergrad as hg
from applications.nas.common.data import load_dataset, split_train_val
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig
from applications.nas.searching.loop import _Search
from applications.nas.spaces.nb201.network import ALPHA_NAME

pytestmark = pytest.mark.float32

LR = 0.025  # the weight learning rate handed to arch_step (the virtual step ξ and iDARTS' γ)


def _documented_estimator(config: SearchConfig) -> object:
    """docs/nas.md's table of methods, written out independently of applications.nas.searching.estimators."""
    return {
        "darts-1st": hg.FirstOrder(),
        "darts-2nd": hg.OneStep(lr=LR, finite_difference=True),
        "idarts": hg.StochasticNeumann(terms=config.neumann_terms, lr=LR, share_batch=config.share_batch),
        "implicit-cg": hg.CG(max_iter=config.solver_max_iter, tol=config.solver_tol, damping=config.solver_damping),
        "implicit-minres": hg.MINRES(max_iter=config.solver_max_iter, tol=config.solver_tol,
                                     damping=config.solver_damping),
    }[config.method]


# The estimator a swapped map would run instead: the reference must differ from it, or the check could not fail.
_CONFUSABLE = {"darts-1st": hg.OneStep(lr=LR), "darts-2nd": hg.FirstOrder(), "idarts": hg.FirstOrder(),
               "implicit-cg": None, "implicit-minres": None}


def _losses(search: _Search):
    net, wd = search.net, search.config.w_weight_decay

    def outer(w, a, batch):
        x, y = batch
        return F.cross_entropy(functional_call(net, (w, a), (x,)), y)

    def inner(w, a, batch):
        return outer(w, a, batch) + 0.5 * wd * sum((p * p).sum() for p in w.values())

    return outer, inner


@pytest.fixture(scope="module")
def data():
    digits = load_dataset("digits")
    return split_train_val(digits.train, 0, 128)


def _search(method: str, data, **overrides) -> _Search:
    train, val = data
    config = SearchConfig(method=method, dataset="digits", channels=2, cells_per_stage=1, batch_size=32,
                          **{"solver_max_iter": 3, **overrides})
    search = _Search(config, train, val)
    for _ in range(2):
        search.weight_step(search.train_stream())
    return search


def _reference(search: _Search, method: object, last_batch) -> dict[str, torch.Tensor]:
    """The hypergradient on the batches arch_step will draw next (copies of its streams), BN statistics frozen."""
    val = copy.deepcopy(search.val_stream)
    hessian = copy.deepcopy(search.hessian_stream)
    inner_batch = hessian if search.config.method == "idarts" else last_batch
    outer, inner = _losses(search)
    norms = [m for m in search.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        return hg.hypergradient(outer, inner, search.weights, search.alphas, outer_batch=val(),
                                inner_batch=inner_batch, method=method).grads
    finally:
        for m, s in zip(norms, saved):
            m.track_running_stats = s


# The search options that change the estimator (--neumann-terms, --share-batch, --solver-*) reach it.
OPTIONS = [(method, {}) for method in GRADIENT_METHODS] + [
    ("idarts", {"neumann_terms": 1, "share_batch": True}),
    ("implicit-cg", {"solver_max_iter": 6, "solver_damping": 3.0, "solver_tol": 1e-3}),
    ("implicit-minres", {"solver_max_iter": 5, "solver_damping": 0.0}),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("method", "options"), OPTIONS, ids=[f"{m}-{'-'.join(map(str, o.values())) or 'defaults'}"
                                                              for m, o in OPTIONS])
def test_arch_step_writes_the_documented_hypergradient_into_alpha_grad(method: str, options: dict, data) -> None:
    search = _search(method, data, **options)
    last_batch = search.train_stream()
    expected = _reference(search, _documented_estimator(search.config), last_batch)[ALPHA_NAME]
    confusable = _CONFUSABLE[method]
    if confusable is not None:
        other = _reference(search, confusable, last_batch)[ALPHA_NAME]
        assert not torch.allclose(expected, other, rtol=1e-3, atol=0)
    if method == "implicit-minres":  # MINRES and CG part ways on the supernet system within a few steps
        config = search.config
        cg = _reference(search, hg.CG(max_iter=config.solver_max_iter, tol=config.solver_tol,
                                      damping=config.solver_damping), last_batch)[ALPHA_NAME]
        assert not torch.allclose(expected, cg, rtol=1e-3, atol=0)
    alpha_before = search.alpha.detach().clone()
    search.arch_step(LR, last_batch)
    assert float(expected.abs().max()) > 1e-6
    # float32 round-off, amplified where CG meets the supernet's negative curvature: 1e-5 of the largest entry.
    torch.testing.assert_close(search.alpha.grad, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    # Adam's first step moves each entry by lr·sign(grad) against the gradient (bias-corrected m/√v = ±1).
    moved = search.alpha.detach() - alpha_before
    big = expected.abs() > 1e-3 * expected.abs().max()
    assert (torch.sign(moved[big]) == -torch.sign(expected[big])).all()


@pytest.mark.parametrize("method", ["darts-1st", "darts-2nd"])
def test_alpha_steps_with_frozen_weights_lower_the_validation_loss(method: str, data) -> None:
    """With w fixed, ∂_αF is the gradient of the validation loss in α (darts-2nd's virtual step is small):
    Adam steps along it must lower that loss on the batch, where a sign error raises it."""
    search = _search(method, data, alpha_lr=0.02, alpha_weight_decay=0.0)
    batch = search.val_stream()
    search.val_stream = lambda: batch  # every α step sees the same validation batch
    outer, _ = _losses(search)

    def val_loss() -> float:
        with torch.no_grad():
            search.net.train()
            return float(outer(dict(search.weights), dict(search.alphas), batch))

    start = val_loss()
    weights = {k: v.detach().clone() for k, v in search.weights.items()}
    for _ in range(5):
        search.arch_step(LR, search.train_stream())
    assert all(torch.equal(weights[k], v) for k, v in search.weights.items())
    assert val_loss() < start - 1e-3
