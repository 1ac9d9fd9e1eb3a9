"""Data hyper-cleaning: one weight per training example, learned so that noisy labels stop counting.

Half of the training labels of scikit-learn's 8x8 digits are replaced by a wrong class. The inner
problem is a logistic regression with example i weighted by σ(a_i); the outer loss is the
cross-entropy on a small clean validation set; the hypergradient in a (800 numbers) is one CG solve
with the 650×650 Hessian of the inner problem. The bilevel part is the twenty lines between the marks.
Checked against: which labels were corrupted (the weights should separate them: ROC AUC), and the same
classifier trained with uniform weights on the noisy set and on the clean examples alone.

    python examples/hyper_cleaning.py [--smoke] [--png hyper_cleaning.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

import hypergrad as hg


def noisy_digits(n_train: int = 800, n_val: int = 200, noise: float = 0.5) -> tuple[dict, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0), torch.tensor(y)
    perm = torch.randperm(len(y))
    X, y = X[perm], y[perm]
    noisy = torch.rand(n_train) < noise
    y_train = y[:n_train].clone()
    y_train[noisy] = (y_train[noisy] + torch.randint(1, 10, (int(noisy.sum()),))) % 10     # a wrong class
    split = {"train": (X[:n_train], y_train), "val": (X[n_train:n_train + n_val], y[n_train:n_train + n_val]),
             "test": (X[n_train + n_val:], y[n_train + n_val:]), "clean": (X[:n_train][~noisy], y_train[~noisy])}
    return split, noisy


def fit(a: torch.Tensor, batch: tuple, params: dict) -> dict:
    """The inner solution by L-BFGS (any solver will do: only the minimum matters)."""
    p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.LBFGS(p.values(), max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = train_loss(p, {"a": a}, batch)
        loss.backward()
        return loss
    opt.step(closure)
    return {k: v.detach() for k, v in p.items()}


# ---- the bilevel problem: twenty lines on top of the library ----
def train_loss(p: dict, h: dict, batch: tuple) -> torch.Tensor:       # f: weighted, L2-regularised
    X, y = batch
    ce = F.cross_entropy(F.linear(X, p["W"], p["b"]), y, reduction="none")
    return (torch.sigmoid(h["a"]) * ce).mean() + 1e-3 * (p["W"] ** 2).sum()


def val_loss(p: dict, h: dict, batch: tuple) -> torch.Tensor:         # F: clean validation set
    X, y = batch
    return F.cross_entropy(F.linear(X, p["W"], p["b"]), y)


def clean(data: dict, steps: int) -> tuple[torch.Tensor, list[float]]:
    a = torch.zeros(len(data["train"][1]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([a], lr=0.1)
    w = {"W": torch.zeros(10, 64, dtype=torch.float64), "b": torch.zeros(10, dtype=torch.float64)}
    history = []
    for _ in range(steps):
        w = fit(a.detach(), data["train"], w)                                   # inner: w*(a)
        opt.zero_grad()
        res = hg.backward(val_loss, train_loss, w, {"a": a}, outer_batch=data["val"],
                          inner_batch=data["train"], method=hg.CG(max_iter=100, tol=1e-8))
        opt.step()                                                              # outer: Adam on a
        history.append(res.outer_value.item())
    return a.detach(), history
# ---- end of the bilevel problem ----


def test_accuracy(a: torch.Tensor, batch: tuple, data: dict) -> float:
    p = fit(a, batch, {"W": torch.zeros(10, 64, dtype=torch.float64), "b": torch.zeros(10, dtype=torch.float64)})
    X, y = data["test"]
    return (F.linear(X, p["W"], p["b"]).argmax(1) == y).double().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few outer steps (seconds), for the tests")
    parser.add_argument("--png", default="hyper_cleaning.png", help="where to write the figure")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data, noisy = noisy_digits()
    steps = 15 if args.smoke else 60
    a, history = clean(data, steps)
    weights = torch.sigmoid(a)
    zeros = lambda batch: torch.zeros(len(batch[1]), dtype=torch.float64)  # noqa: E731  (weights ½: the start)
    result = {
        "auc_noisy_vs_clean": roc_auc_score((~noisy).numpy(), weights.numpy()),
        "noisy_fraction": noisy.double().mean().item(),
        "test_accuracy_cleaned": test_accuracy(a, data["train"], data),
        "test_accuracy_uniform": test_accuracy(zeros(data["train"]), data["train"], data),
        "test_accuracy_clean_only": test_accuracy(zeros(data["clean"]), data["clean"], data),
        "mean_weight_noisy": weights[noisy].mean().item(), "mean_weight_clean": weights[~noisy].mean().item(),
    }
    print(f"{len(noisy)} training digits, {int(noisy.sum())} with a wrong label; {steps} outer steps")
    print(f"learned weights: mean {result['mean_weight_clean']:.2f} on clean examples, "
          f"{result['mean_weight_noisy']:.2f} on noisy ones (ROC AUC {result['auc_noisy_vs_clean']:.3f})")
    print(f"test accuracy: uniform weights {result['test_accuracy_uniform']:.3f}, learned weights "
          f"{result['test_accuracy_cleaned']:.3f}, clean examples only (oracle) {result['test_accuracy_clean_only']:.3f}")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(history)
    a.set(xlabel="outer step", ylabel="validation cross-entropy", title="outer objective")
    b.hist([weights[~noisy].numpy(), weights[noisy].numpy()], bins=30, label=["clean label", "wrong label"])
    b.set(xlabel="learned weight σ(a_i)", ylabel="examples", title="weights by label quality")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
