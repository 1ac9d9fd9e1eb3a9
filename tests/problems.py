"""Bilevel test problems whose answers are known independently of the library."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


class Ridge:
    """f = ½‖Xw − y‖² + ½ Σ λ_j w_j²,  F = ½‖X_v w − y_v‖²; λ per feature or one scalar (0-d)."""

    def __init__(self, n: int = 40, d: int = 6, per_feature: bool = True, seed: int = 0,
                 dtype: torch.dtype | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        kw = {"generator": g, "dtype": dtype}
        self.X = torch.randn(n, d, **kw)
        self.y = self.X @ torch.randn(d, **kw) + 0.5 * torch.randn(n, **kw)
        self.Xv = torch.randn(n // 2, d, **kw)
        self.yv = self.Xv @ torch.randn(d, **kw) + 0.5 * torch.randn(n // 2, **kw)
        self.lam = torch.rand(d, **kw) + 0.5 if per_feature else torch.tensor(1.3, dtype=dtype)
        self.train, self.val = (self.X, self.y), (self.Xv, self.yv)

    @staticmethod
    def inner(p, h, batch):
        X, y = batch
        return 0.5 * ((X @ p["w"] - y) ** 2).sum() + 0.5 * (h["lam"] * p["w"] ** 2).sum()

    @staticmethod
    def outer(p, h, batch):
        X, y = batch
        return 0.5 * ((X @ p["w"] - y) ** 2).sum()

    def matrix(self, lam: torch.Tensor | None = None) -> torch.Tensor:
        lam = self.lam if lam is None else lam
        d = self.X.shape[1]
        return self.X.T @ self.X + torch.diag(lam.expand(d))

    def solution(self, lam: torch.Tensor | None = None) -> torch.Tensor:
        return torch.linalg.solve(self.matrix(lam), self.X.T @ self.y)

    def outer_grad(self, w: torch.Tensor) -> torch.Tensor:
        """∇_wF by hand."""
        return self.Xv.T @ (self.Xv @ w - self.yv)

    def direct(self, w: torch.Tensor) -> torch.Tensor:
        """∂_λF by hand: zero, F does not depend on λ."""
        return torch.zeros_like(self.lam)

    def hypergradient(self, damping: float = 0.0) -> torch.Tensor:
        """Closed form: w* = A⁻¹Xᵀy, dw*/dλ_j = −A⁻¹ e_j w_j, so dF/dλ = ∂_λF − w ⊙ A⁻¹∇_wF.

        With ``damping`` δ, the value every damped estimator computes: A + δI in place of A.
        """
        w = self.solution()
        a = self.matrix() + damping * torch.eye(len(w))
        per_feature = -w * torch.linalg.solve(a, self.outer_grad(w))
        return self.direct(w) + (per_feature if self.lam.dim() else per_feature.sum())


class PenalisedRidge(Ridge):
    """Ridge whose outer loss depends on λ too: F = ½‖X_v w − y_v‖² + ½c Σ λ_j w_j², so ∂_λF ≠ 0."""

    c = 0.3

    def outer(self, p, h, batch):  # type: ignore[override]
        return Ridge.outer(p, h, batch) + 0.5 * self.c * (h["lam"] * p["w"] ** 2).sum()

    def outer_grad(self, w: torch.Tensor) -> torch.Tensor:
        return super().outer_grad(w) + self.c * self.lam * w

    def direct(self, w: torch.Tensor) -> torch.Tensor:
        per_feature = 0.5 * self.c * w**2
        return per_feature if self.lam.dim() else per_feature.sum()


class Logistic:
    """Binary logistic regression with per-feature L2 exp(θ_j); inner problem solved by Newton's method."""

    def __init__(self, n: int = 80, d: int = 5, seed: int = 1, dtype: torch.dtype | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        kw = {"generator": g, "dtype": dtype}
        w_true = torch.randn(d, **kw)
        self.X = torch.randn(n, d, **kw)
        self.y = (torch.rand(n, **kw) < torch.sigmoid(self.X @ w_true)).to(self.X.dtype)
        self.Xv = torch.randn(n, d, **kw)
        self.yv = (torch.rand(n, **kw) < torch.sigmoid(self.Xv @ w_true)).to(self.X.dtype)
        self.theta = torch.randn(d, **kw) * 0.5 - 1.0
        self.train, self.val = (self.X, self.y), (self.Xv, self.yv)

    @staticmethod
    def inner(p, h, batch):
        X, y = batch
        return F.binary_cross_entropy_with_logits(X @ p["w"], y, reduction="sum") + 0.5 * (h["theta"].exp() * p["w"] ** 2).sum()

    @staticmethod
    def outer(p, h, batch):
        X, y = batch
        return F.binary_cross_entropy_with_logits(X @ p["w"], y)

    def solve(self, theta: torch.Tensor | None = None, iters: int = 12) -> torch.Tensor:
        theta = self.theta if theta is None else theta
        w = torch.zeros(self.X.shape[1], dtype=self.X.dtype)
        f = lambda w_: self.inner({"w": w_}, {"theta": theta}, self.train)  # noqa: E731
        for _ in range(iters):
            g = torch.func.grad(f)(w)
            w = w - torch.linalg.solve(torch.func.hessian(f)(w), g)
        return w

    def hypergradient(self) -> torch.Tensor:
        """The IFT with dense derivatives from torch.func, independent of the library's products."""
        w = self.solve()
        f = lambda w_, t_: self.inner({"w": w_}, {"theta": t_}, self.train)  # noqa: E731
        H = torch.func.hessian(f, argnums=0)(w, self.theta)
        mixed = torch.func.jacfwd(torch.func.grad(f, argnums=0), argnums=1)(w, self.theta)  # ∂_θ ∂_w f
        gF = torch.func.grad(lambda w_: self.outer({"w": w_}, {}, self.val))(w)
        return -mixed.T @ torch.linalg.solve(H, gF)


def mlp_params(sizes: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        p[f"W{i}"] = torch.randn(a, b, generator=g) / a**0.5
        p[f"b{i}"] = torch.zeros(b)
    return p


def mlp_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    n = len(p) // 2
    for i in range(n):
        x = x @ p[f"W{i}"] + p[f"b{i}"]
        if i < n - 1:
            x = torch.tanh(x)
    return x


def mlp_inner(p, h, batch):
    """Cross-entropy plus per-tensor weight decay exp(h[name]) (each hyperparameter a 0-d tensor)."""
    x, y = batch
    decay = sum(0.5 * h[k].exp() * (v**2).sum() for k, v in p.items())
    return F.cross_entropy(mlp_forward(p, x), y) + decay


def mlp_outer(p, h, batch):
    x, y = batch
    return F.cross_entropy(mlp_forward(p, x), y)


def minimise(loss, params: dict[str, torch.Tensor], iters: int = 200) -> dict[str, torch.Tensor]:
    """Tight inner solve by L-BFGS (float64), for problems without a closed form."""
    keys = list(params)
    x = [params[k].clone().requires_grad_() for k in keys]
    opt = torch.optim.LBFGS(x, lr=1, max_iter=iters, tolerance_grad=1e-13, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss(dict(zip(keys, x)))
        value.backward()
        return value

    for _ in range(5):
        opt.step(closure)
    return {k: v.detach() for k, v in zip(keys, x)}
