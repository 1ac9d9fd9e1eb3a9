"""Designing a game: the payoffs of a two-player zero-sum game tuned through its equilibrium (``hg.Root``).

Players with entropy-regularised (logit) best responses meet at the quantal response equilibrium
(x*, y*) of the payoff matrix A, the root of the non-symmetric map

    F(x, y; A) = (x − softmax(A y / τ),  y − softmax(−Aᵀ x / τ)).

The outer problem changes the payoffs, A = A₀ + Δ, so that the row player's equilibrium strategy
becomes a target mix, at the least change: L = ‖x* − p‖² + ρ‖Δ‖². ``hg.hypergradient(…, hg.Root(F), …)``
differentiates through the root by GMRES on (∂F/∂(x, y))ᵀu = ∂L/∂(x, y): the Jacobian of a game is not
symmetric, so CG or a Neumann series on a Hessian would not apply. The forward solve is Newton's method
with the dense 2n×2n Jacobian (quadratic convergence to machine precision). Checked against: central
finite differences of the outer loss through that Newton solve.

    python examples/game_equilibrium.py [--smoke] [--png game_equilibrium.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import hypergrad as hg

TAU, RHO = 0.5, 1e-3


def best_response_gap(s: dict, h: dict, A0: torch.Tensor) -> dict:
    """F(x, y; Δ): zero exactly at the logit equilibrium of the game with payoffs A₀ + Δ."""
    A = A0 + h["delta"]
    return {"x": s["x"] - torch.softmax(A @ s["y"] / TAU, 0), "y": s["y"] - torch.softmax(-A.T @ s["x"] / TAU, 0)}


def equilibrium(delta: torch.Tensor, A0: torch.Tensor, tol: float = 1e-14) -> dict:
    """Newton's method on F with its dense Jacobian, from the uniform strategies."""
    n = len(A0)
    flat = lambda v: best_response_gap({"x": v[:n], "y": v[n:]}, {"delta": delta}, A0)  # noqa: E731
    F = lambda v: torch.cat([flat(v)["x"], flat(v)["y"]])  # noqa: E731
    v = torch.full((2 * n,), 1.0 / n, dtype=A0.dtype)
    for _ in range(50):
        step = torch.linalg.solve(torch.func.jacrev(F)(v), F(v))
        v = v - step
        if step.norm() <= tol:
            break
    return {"x": v[:n], "y": v[n:]}


def outer_loss(s: dict, h: dict, target: torch.Tensor) -> torch.Tensor:
    return ((s["x"] - target) ** 2).sum() + RHO * (h["delta"] ** 2).sum()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few outer steps (seconds), for the tests")
    parser.add_argument("--png", default="game_equilibrium.png", help="where to write the figure")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    n = 5
    A0 = torch.randn(n, n, dtype=torch.float64)
    target = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)
    delta = torch.zeros(n, n, dtype=torch.float64, requires_grad=True)
    root = hg.Root(best_response_gap)                     # the batch argument carries A₀
    opt = torch.optim.Adam([delta], lr=0.05)
    steps = 40 if args.smoke else 400
    x_start = equilibrium(delta.detach(), A0)["x"]
    history, iterations = [], []
    for _ in range(steps):
        s = equilibrium(delta.detach(), A0)
        opt.zero_grad()
        res = hg.backward(outer_loss, root, s, {"delta": delta}, outer_batch=target, inner_batch=A0,
                          method=hg.GMRES(tol=1e-12))
        opt.step()
        history.append(res.outer_value.item())
        iterations.append(res.info.iterations)

    # The check: the GMRES hypergradient against central differences through the Newton solve.
    d = delta.detach()
    res = hg.hypergradient(outer_loss, root, equilibrium(d, A0), {"delta": d}, outer_batch=target,
                           inner_batch=A0, method=hg.GMRES(tol=1e-12))
    fd, eps = torch.zeros_like(d), 1e-6
    for i in range(n):
        for j in range(n):
            e = torch.zeros_like(d)
            e[i, j] = eps
            fd[i, j] = (outer_loss(equilibrium(d + e, A0), {"delta": d + e}, target)
                        - outer_loss(equilibrium(d - e, A0), {"delta": d - e}, target)) / (2 * eps)
    s = equilibrium(d, A0)
    result = {"distance_start": (x_start - target).norm().item(), "distance_end": (s["x"] - target).norm().item(),
              "payoff_change": d.norm().item() / A0.norm().item(),
              "hypergrad_vs_fd": ((res.grads["delta"] - fd).norm() / fd.norm()).item(),
              "gmres_iterations_max": max(iterations)}
    print(f"{n}x{n} zero-sum game, logit equilibrium at τ = {TAU}; target row strategy {target.tolist()}")
    print(f"row player's equilibrium: {[round(v, 3) for v in x_start.tolist()]} before, "
          f"{[round(v, 3) for v in s['x'].tolist()]} after {steps} outer steps")
    print(f"distance to the target {result['distance_start']:.3f} -> {result['distance_end']:.4f}, "
          f"payoffs changed by {100 * result['payoff_change']:.1f}% (Frobenius)")
    print(f"check: GMRES hypergradient vs finite differences through Newton {result['hypergrad_vs_fd']:.1e} "
          f"(relative; GMRES at most {result['gmres_iterations_max']} iterations on the {2 * n}-dim system)")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(history)
    a.set(xlabel="outer step", ylabel="‖x* − p‖² + ρ‖Δ‖²", yscale="log", title="outer objective")
    idx = torch.arange(n)
    b.bar(idx - 0.27, x_start.numpy(), 0.27, label="equilibrium, A₀", color="gray")
    b.bar(idx, s["x"].numpy(), 0.27, label="equilibrium, A₀ + Δ")
    b.bar(idx + 0.27, target.numpy(), 0.27, label="target", color="black")
    b.set(xlabel="row player's action", ylabel="probability", title="row player's equilibrium strategy")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
