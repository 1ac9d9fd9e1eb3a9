"""A deep equilibrium classifier on scikit-learn's 8x8 digits, trained through ``hg.FixedPointMap``.

The hidden state is the fixed point z* = tanh(W z* + U x + b) of one layer, found by plain iteration
without a graph; ``hg.implicit`` attaches it to (W, U, b) by the implicit function theorem, so the
backward pass solves (I − ∂_zT)ᵀu = ∂_zL by GMRES (one VJP of the layer per iteration) and never stores
the forward iterations. W = 0.6 V / max(1, ‖V‖_F) keeps the layer a contraction, so z* exists and is
unique. Checked against: the gradient of the same loss by autograd through 100 unrolled iterations.

    python examples/deq_digits.py [--smoke] [--png deq_digits.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import hypergrad as hg

WIDTH = 64


def layer(p: dict, h: dict, x: torch.Tensor) -> dict:
    """T(z; x, θ) = tanh(W z + U x + b) with W = 0.6 V / max(1, ‖V‖_F) (‖W‖₂ ≤ 0.6: a contraction)."""
    W = 0.6 * h["V"] / h["V"].norm().clamp_min(1.0)
    return {"z": torch.tanh(F.linear(p["z"], W) + F.linear(x, h["U"], h["b"]))}


def forward_solve(theta: dict, x: torch.Tensor, iters: int = 100, tol: float = 1e-10) -> torch.Tensor:
    """z* by fixed-point iteration, without a graph."""
    with torch.no_grad():
        z = torch.zeros(len(x), WIDTH, dtype=x.dtype)
        for _ in range(iters):
            z_next = layer({"z": z}, theta, x)["z"]
            if (z_next - z).norm() <= tol * z_next.norm():
                return z_next
            z = z_next
    return z


def loss_deq(theta: dict, x: torch.Tensor, y: torch.Tensor, infos: list | None = None) -> torch.Tensor:
    z = forward_solve(theta, x)
    layer_theta = {k: theta[k] for k in ("V", "U", "b")}
    z = hg.implicit(hg.FixedPointMap(layer), {"z": z}, layer_theta, x, method=hg.GMRES(tol=1e-10),
                    on_solve=None if infos is None else infos.append)["z"]
    return F.cross_entropy(F.linear(z, theta["R"]), y)


def loss_unrolled(theta: dict, x: torch.Tensor, y: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """The reference: the same loss with autograd through every forward iteration."""
    z = torch.zeros(len(x), WIDTH, dtype=x.dtype)
    for _ in range(iters):
        z = layer({"z": z}, theta, x)["z"]
    return F.cross_entropy(F.linear(z, theta["R"]), y)


def accuracy(theta: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    z = forward_solve(theta, x)
    return (F.linear(z, theta["R"]).argmax(1) == y).double().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two epochs (seconds), for the tests")
    parser.add_argument("--png", default="deq_digits.png", help="where to write the figure")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    X_tr, X_te = torch.tensor(X_tr), torch.tensor(X_te)
    y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)
    epochs, batch = (2, 128) if args.smoke else (10, 128)

    g = lambda *shape, scale: (scale * torch.randn(*shape, dtype=torch.float64)).requires_grad_()  # noqa: E731
    theta = {"V": g(WIDTH, WIDTH, scale=0.5 / WIDTH ** 0.5), "U": g(WIDTH, 64, scale=1 / 8),
             "b": g(WIDTH, scale=0.0), "R": g(10, WIDTH, scale=1 / WIDTH ** 0.5)}
    opt = torch.optim.Adam(theta.values(), lr=1e-2)
    losses, infos = [], []
    for _ in range(epochs):
        for idx in torch.randperm(len(X_tr)).split(batch):
            opt.zero_grad()
            loss = loss_deq(theta, X_tr[idx], y_tr[idx], infos)
            loss.backward()
            opt.step()
            losses.append(loss.item())

    # The check: implicit backward against autograd through 100 unrolled iterations, on a test batch.
    x, t = X_te[:200], y_te[:200]
    g_imp = torch.autograd.grad(loss_deq(theta, x, t), list(theta.values()))
    g_unr = torch.autograd.grad(loss_unrolled(theta, x, t), list(theta.values()))
    rel = max(((a - b).norm() / b.norm()).item() for a, b in zip(g_imp, g_unr))
    result = {"train_accuracy": accuracy(theta, X_tr, y_tr), "test_accuracy": accuracy(theta, X_te, y_te),
              "backward_vs_unrolled": rel, "gmres_iterations_mean": sum(i.iterations for i in infos) / len(infos),
              "all_converged": all(i.converged for i in infos)}
    print(f"DEQ (width {WIDTH}, {epochs} epochs): train accuracy {result['train_accuracy']:.3f}, "
          f"test accuracy {result['test_accuracy']:.3f} on {len(y_te)} held-out digits")
    print(f"backward: GMRES {result['gmres_iterations_mean']:.1f} iterations per batch on average, "
          f"all converged: {result['all_converged']}")
    print(f"check: implicit gradient vs autograd through 100 unrolled iterations: {rel:.1e} (relative, worst tensor)")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(losses)
    a.set(xlabel="step", ylabel="training cross-entropy", yscale="log", title="DEQ training")
    b.plot([i.iterations for i in infos], ".", ms=3)
    b.set(xlabel="step", ylabel="GMRES iterations", title="backward solve per step (tol 1e-10)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
