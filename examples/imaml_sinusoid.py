"""Implicit MAML (Rajeswaran et al., 2019) on the sinusoid few-shot regression of the MAML paper.

Each task is y = a sin(x − φ) (a in [0.1, 5], φ in [0, π], x in [−5, 5]), seen through K = 10 points.
Adapting the meta-parameters θ of a 1-40-40-1 tanh network to a task is the proximal inner problem

    φ*(θ) = argmin_φ  L_support(φ) + (λ/2)‖φ − θ‖²,

and the meta-gradient of L_query(φ*(θ)) is (I + ∇²L_support/λ)⁻¹ ∇L_query: exactly what
``hg.hypergradient`` returns for this pair of losses (the mixed derivative is −λI), here by 5 CG
iterations as in the paper. First-order MAML drops the inverse (λ → ∞: the gradient at φ is used as
the gradient at θ). Both are meta-trained with the same tasks and steps and compared on held-out tasks.
Checked against: central finite differences of the query loss through a tight inner solve.

    python examples/imaml_sinusoid.py [--smoke] [--png imaml_sinusoid.png]
"""

from __future__ import annotations

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import hypergrad as hg

LAM, INNER_LR, INNER_STEPS, K = 2.0, 0.02, 16, 10


def net(p: dict, x: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(F.linear(x / 5, p["W1"], p["b1"]))              # inputs scaled to [−1, 1]
    h = torch.tanh(F.linear(h, p["W2"], p["b2"]))
    return F.linear(h, p["W3"], p["b3"])


def task(gen: torch.Generator, n_query: int) -> tuple[tuple, tuple, float, float]:
    a, phase = 0.1 + 4.9 * torch.rand((), generator=gen), math.pi * torch.rand((), generator=gen)
    x = 10 * torch.rand(K + n_query, 1, generator=gen, dtype=torch.float64) - 5
    y = a * torch.sin(x - phase)
    return (x[:K], y[:K]), (x[K:], y[K:]), float(a), float(phase)


def query_loss(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(net(p, x), y)


def proximal_loss(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    """The inner objective of iMAML: the support loss, kept near the meta-parameters θ = h."""
    return query_loss(p, h, batch) + 0.5 * LAM * sum(((p[k] - h[k]) ** 2).sum() for k in p)


def adapt(theta: dict, support: tuple, proximal: bool, steps: int = INNER_STEPS) -> dict:
    """Gradient descent from θ on the support set (iMAML: on the proximal objective)."""
    loss = proximal_loss if proximal else query_loss
    p = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    for _ in range(steps):
        grads = torch.autograd.grad(loss(p, theta, support), list(p.values()))
        p = {k: (v - INNER_LR * g).detach().requires_grad_() for (k, v), g in zip(p.items(), grads)}
    return {k: v.detach() for k, v in p.items()}


def meta_gradient(theta: dict, support: tuple, query: tuple, implicit: bool) -> dict:
    phi = adapt(theta, support, proximal=implicit)
    if implicit:
        return hg.hypergradient(query_loss, proximal_loss, phi, theta, outer_batch=query, inner_batch=support,
                                method=hg.CG(max_iter=5, tol=1e-10)).grads
    p = {k: v.requires_grad_() for k, v in phi.items()}
    return dict(zip(p, torch.autograd.grad(query_loss(p, {}, query), list(p.values()))))


def init(gen: torch.Generator) -> dict:
    shapes = {"W1": (40, 1), "b1": (40,), "W2": (40, 40), "b2": (40,), "W3": (1, 40), "b3": (1,)}
    return {k: (torch.randn(*s, generator=gen, dtype=torch.float64) * (2 / s[-1]) ** 0.5 if len(s) == 2
                else torch.zeros(s, dtype=torch.float64)).requires_grad_() for k, s in shapes.items()}


def meta_train(implicit: bool, iterations: int, meta_batch: int = 5) -> tuple[dict, list[float]]:
    gen = torch.Generator().manual_seed(0)                      # the same tasks for both methods
    theta = init(gen)
    opt = torch.optim.Adam(theta.values(), lr=5e-3)
    history = []
    for _ in range(iterations):
        tasks = [task(gen, K) for _ in range(meta_batch)]
        grads = [meta_gradient(theta, s, q, implicit) for s, q, _, _ in tasks]
        for k, v in theta.items():
            v.grad = sum(g[k] for g in grads) / meta_batch
        opt.step()
        history.append(sum(query_loss(adapt(theta, s, implicit), {}, q).item() for s, q, _, _ in tasks) / meta_batch)
    return theta, history


def held_out_mse(theta: dict, implicit: bool, n_tasks: int) -> float:
    gen = torch.Generator().manual_seed(12345)                  # tasks never seen in meta-training
    losses = [query_loss(adapt(theta, s, implicit), {}, q).item() for s, q, _, _ in (task(gen, 100) for _ in range(n_tasks))]
    return sum(losses) / n_tasks


def tight(theta: dict, support: tuple) -> dict:
    """The proximal inner problem solved to a gradient norm of ~1e-10 by L-BFGS (for the check)."""
    p = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    opt = torch.optim.LBFGS(p.values(), max_iter=2000, tolerance_grad=1e-11, tolerance_change=0, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = proximal_loss(p, theta, support)
        loss.backward()
        return loss
    opt.step(closure)
    return {k: v.detach() for k, v in p.items()}


def fd_check(theta: dict) -> float:
    """Relative error of the CG meta-gradient (tight inner solve) against central differences along a direction."""
    gen = torch.Generator().manual_seed(7)
    support, query, _, _ = task(gen, K)
    th = {k: v.detach() for k, v in theta.items()}
    grads = hg.hypergradient(query_loss, proximal_loss, tight(th, support), th, outer_batch=query, inner_batch=support,
                             method=hg.CG(max_iter=200, tol=1e-12)).grads
    d = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in th.items()}
    eps = 1e-4
    f = lambda s: query_loss(tight({k: th[k] + s * eps * d[k] for k in th}, support), {}, query).item()  # noqa: E731
    fd = (f(1) - f(-1)) / (2 * eps)
    return abs(sum((grads[k] * d[k]).sum().item() for k in th) - fd) / abs(fd)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few meta-iterations (seconds), for the tests")
    parser.add_argument("--png", default="imaml_sinusoid.png", help="where to write the figure")
    args = parser.parse_args(argv)
    iterations, n_test = (40, 50) if args.smoke else (300, 200)
    imaml, imaml_hist = meta_train(True, iterations)
    fomaml, fomaml_hist = meta_train(False, iterations)
    untrained = init(torch.Generator().manual_seed(0))
    result = {"imaml_test_mse": held_out_mse(imaml, True, n_test), "fomaml_test_mse": held_out_mse(fomaml, False, n_test),
              "untrained_test_mse": held_out_mse(untrained, True, n_test), "fd_check": fd_check(imaml)}
    print(f"{iterations} meta-iterations of 5 tasks, K = {K}; held-out query MSE after adaptation ({n_test} new tasks): "
          f"iMAML (CG-5, λ = {LAM}) {result['imaml_test_mse']:.3f}, first-order MAML {result['fomaml_test_mse']:.3f}, "
          f"no meta-training {result['untrained_test_mse']:.3f}")
    print(f"check: meta-gradient vs finite differences through a tight inner solve {result['fd_check']:.1e} (relative)")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, hist in (("iMAML", imaml_hist), ("first-order MAML", fomaml_hist)):
        a.plot(torch.tensor(hist).unfold(0, min(50, len(hist)), 1).mean(1), label=name)     # running mean of 50
    a.set(xlabel="meta-iteration", ylabel="query MSE after adaptation", yscale="log", title="meta-training")
    a.legend()
    support, _, amp, phase = task(torch.Generator().manual_seed(3), K)
    x = torch.linspace(-5, 5, 200, dtype=torch.float64)[:, None]
    b.plot(x, amp * torch.sin(x - phase), "k", label="task")
    b.plot(support[0], support[1], "k^", label=f"{K} shots")
    adapted = {"iMAML": adapt(imaml, support, True), "first-order MAML": adapt(fomaml, support, False)}
    for name, p in adapted.items():
        b.plot(x, net(p, x), label=f"{name}, adapted")
    b.set(xlabel="x", title="a held-out task")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
