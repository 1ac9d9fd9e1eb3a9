"""Each convex HPO task's hypergradient against central finite differences of its validation loss
through a tight inner solve (the task's own L-BFGS), on the two coordinates with the largest entries.

The searches themselves run Adam, which hides a wrong magnitude; this checks the value. (weight-decay's
inner problem is an SGD-trained MLP, too loose for differences to resolve; its estimator is the same CG.)
"""

from __future__ import annotations

import pytest

import hypergrad as hg
from applications.hpo.logreg_l2 import LogregL2
from applications.hpo.reweight import Reweight

pytestmark = pytest.mark.float32  # the tasks fix their own dtypes


def _validation_loss(task, params, hparams) -> float:
    solved, _ = task.solve_inner({k: v.clone() for k, v in params.items()}, hparams)
    return float(task.outer_loss(solved, hparams, task.val_batch))


@pytest.mark.parametrize("make", [lambda: LogregL2("breast-cancer", seed=0, tol=1e-12),
                                  lambda: Reweight("digits", seed=0, tol=1e-12)], ids=["logreg-l2", "reweight"])
def test_task_hypergradient_matches_central_differences_of_the_validation_loss(make) -> None:
    task = make()
    hparams = {k: v.detach() for k, v in task.init_hparams().items()}
    params, _ = task.solve_inner(task.init_params(), hparams)
    res = hg.hypergradient(task.outer_loss, task.inner_loss, params, hparams, outer_batch=task.val_batch,
                           inner_batch=task.hessian_batch(), method=hg.CG(max_iter=1000, tol=1e-12))
    assert res.info.converged
    (name,) = hparams
    flat = res.grads[name].reshape(-1)
    eps = 1e-2  # the inner solve stops at a gradient tolerance: a larger step keeps its error out of the difference
    for i in flat.abs().argsort(descending=True)[:2].tolist():
        values = []
        for sign in (1, -1):
            moved = hparams[name].clone().reshape(-1)
            moved[i] += sign * eps
            values.append(_validation_loss(task, params, {name: moved.reshape(hparams[name].shape)}))
        fd = (values[0] - values[1]) / (2 * eps)
        assert float(flat[i]) == pytest.approx(fd, rel=1e-3), (i, float(flat[i]), fd)
