"""Example reweighting finds planted label flips; its flip-detection scores mean what they say."""

from __future__ import annotations

import torch

import hypergrad as hg
from applications.hpo.budget import Budget
from applications.hpo.data import Split, Splits
from applications.hpo.history import Trace
from applications.hpo.outer_loop import implicit_search
from applications.hpo.reweight import Reweight, flip_detection


def two_blobs(n: int, gen: torch.Generator) -> Split:
    """Two well-separated Gaussian classes in 2-D, centred at (-2, 0) and (2, 0)."""
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 0.7
    x[:, 0] += 4.0 * y - 2.0
    return Split(x, y)


def test_a_planted_flipped_label_gets_the_smallest_weight():
    gen = torch.Generator().manual_seed(0)
    train, val, test = two_blobs(40, gen), two_blobs(40, gen), two_blobs(40, gen)
    planted = 6  # a class-0 example deep in its own class, labelled 1
    train.x[planted] = torch.tensor([-3.0, 0.0], dtype=torch.float64)
    noisy = train.y.clone()
    noisy[planted] = 1
    flipped = torch.zeros(40, dtype=torch.bool)
    flipped[planted] = True
    task = Reweight(splits=Splits(Split(train.x, noisy), val, test, 2), flipped=flipped, l2=1e-2)
    budget = Budget(600.0, max_steps=15)
    trace = Trace(task, budget, "toy", progress=False)
    implicit_search(task, hg.CG(max_iter=50), lambda ps: torch.optim.Adam(ps, lr=0.5), budget, trace)
    weights = torch.sigmoid(trace.best_hparams["logit"])
    assert int(weights.argmin()) == planted
    # Not just first by a hair: the planted flip is far below every clean example.
    assert weights[planted] < 0.5 * weights[~flipped].min()
    assert trace.best.val_loss < trace.records[0].val_loss
    assert task.task_metrics(trace.best_hparams)["precision_at_k"] == 1.0


def test_flip_detection_scores_a_perfect_a_reversed_and_a_tied_ranking():
    flipped = torch.tensor([True, False, True, False, False])
    perfect = flip_detection(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.7]), flipped)
    assert perfect == {"precision_at_k": 1.0, "auc": 1.0, "n_flipped": 2}
    reversed_ = flip_detection(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.3]), flipped)
    assert reversed_["precision_at_k"] == 0.0 and reversed_["auc"] == 0.0
    tied = flip_detection(torch.full((5,), 0.5), flipped)
    assert tied["auc"] == 0.5
