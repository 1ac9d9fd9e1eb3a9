"""Problems whose inner solution is a root or a fixed point, with answers known independently of the library.

All are float64. Each builds its data from a private generator, solves the inner problem to machine
precision (a long iteration identifies the active set; the closed form on it is then exact), and gives
the hypergradient of ``L = ½‖X_v w − y_v‖²`` in closed form. The deep equilibrium layer, whose answer is
autograd through an unrolled iteration, is ``benchmarks._deq.Equilibrium``, shared with the benchmark.
"""

from __future__ import annotations

import torch

DT = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Lasso:
    """min_w ½‖Xw − y‖²/n + Σ_j λ_j |w_j| as the fixed point of the prox-gradient (ISTA) map
    T(w, λ) = S_{ηλ}(w − η Xᵀ(Xw − y)/n), S the soft threshold, η = 1/L."""

    def __init__(self, n: int = 50, d: int = 12, seed: int = 0) -> None:
        g = _gen(seed)
        self.X = torch.randn(n, d, generator=g, dtype=DT)
        w_true = torch.randn(d, generator=g, dtype=DT) * (torch.rand(d, generator=g, dtype=DT) < 0.5)
        self.y = self.X @ w_true + 0.3 * torch.randn(n, generator=g, dtype=DT)
        self.Xv = torch.randn(n, d, generator=g, dtype=DT)
        self.yv = self.Xv @ w_true + 0.3 * torch.randn(n, generator=g, dtype=DT)
        self.lam = 0.05 + 0.1 * torch.rand(d, generator=g, dtype=DT)
        self.eta = float(1.0 / torch.linalg.eigvalsh(self.X.T @ self.X / n)[-1])
        self.train, self.val = (self.X, self.y), (self.Xv, self.yv)
        self.w = self._solve()

    def T(self, p: dict, h: dict, batch: tuple) -> dict:
        X, y = batch
        z = p["w"] - self.eta * X.T @ (X @ p["w"] - y) / len(y)
        return {"w": torch.sign(z) * (z.abs() - self.eta * h["lam"]).clamp_min(0)}

    @staticmethod
    def outer(p: dict, h: dict, batch: tuple) -> torch.Tensor:
        X, y = batch
        return 0.5 * ((X @ p["w"] - y) ** 2).sum()

    def _solve(self) -> torch.Tensor:
        w = torch.zeros(self.X.shape[1], dtype=DT)
        for _ in range(20000):
            w = self.T({"w": w}, {"lam": self.lam}, self.train)["w"]
        self.support = w != 0
        self.signs = torch.sign(w[self.support])
        n, S = len(self.y), self.support
        XS = self.X[:, S]
        w = torch.zeros_like(w)
        w[S] = torch.linalg.solve(XS.T @ XS, XS.T @ self.y - n * self.lam[S] * self.signs)
        # Strict KKT: the signs hold on the support, the subgradient is strictly inside off it.
        corr = self.X.T @ (self.y - self.X @ w) / n
        assert torch.equal(torch.sign(w[S]), self.signs)
        assert bool((corr[~S].abs() < self.lam[~S] - 1e-6).all()) and 0 < int(S.sum()) < len(w)
        return w

    def hypergradient(self) -> torch.Tensor:
        """dw_S/dλ_j = −n (X_SᵀX_S)⁻¹ e_j s_j on the support, dw/dλ_j = 0 off it."""
        S, n = self.support, len(self.y)
        XS = self.X[:, S]
        gv = self.Xv.T @ (self.Xv @ self.w - self.yv)
        out = torch.zeros_like(self.w)
        out[S] = -n * self.signs * torch.linalg.solve(XS.T @ XS, gv[S])
        return out


class NonNegativeRidge:
    """min_{w ≥ 0} ½‖Xw − y‖²/n + ½ Σ_j λ_j w_j² as a root of the projected-gradient residual
    F(w, λ) = w − max(w − η ∇_w f(w, λ), 0), whose Jacobian is not symmetric."""

    def __init__(self, n: int = 40, d: int = 10, seed: int = 1) -> None:
        g = _gen(seed)
        self.X = torch.randn(n, d, generator=g, dtype=DT)
        w_true = torch.randn(d, generator=g, dtype=DT)
        self.y = self.X @ w_true + 0.3 * torch.randn(n, generator=g, dtype=DT)
        self.Xv = torch.randn(n, d, generator=g, dtype=DT)
        self.yv = self.Xv @ w_true + 0.3 * torch.randn(n, generator=g, dtype=DT)
        self.lam = 0.1 + 0.2 * torch.rand(d, generator=g, dtype=DT)
        self.eta = float(1.0 / (torch.linalg.eigvalsh(self.X.T @ self.X / n)[-1] + self.lam.max()))
        self.train, self.val = (self.X, self.y), (self.Xv, self.yv)
        self.w = self._solve()

    def grad_f(self, w: torch.Tensor, lam: torch.Tensor, batch: tuple) -> torch.Tensor:
        X, y = batch
        return X.T @ (X @ w - y) / len(y) + lam * w

    def F(self, p: dict, h: dict, batch: tuple) -> dict:
        w = p["w"]
        return {"w": w - (w - self.eta * self.grad_f(w, h["lam"], batch)).clamp_min(0)}

    outer = staticmethod(Lasso.outer)

    def _matrix(self) -> torch.Tensor:
        XS = self.X[:, self.support]
        return XS.T @ XS / len(self.y) + torch.diag(self.lam[self.support])

    def _solve(self) -> torch.Tensor:
        w = torch.zeros(self.X.shape[1], dtype=DT)
        for _ in range(20000):
            w = (w - self.eta * self.grad_f(w, self.lam, self.train)).clamp_min(0)
        self.support = w > 0
        S = self.support
        w = torch.zeros_like(w)
        w[S] = torch.linalg.solve(self._matrix(), self.X[:, S].T @ self.y / len(self.y))
        assert bool((w[S] > 0).all()) and bool((self.grad_f(w, self.lam, self.train)[~S] > 1e-6).all())
        assert 0 < int(S.sum()) < len(w)
        return w

    def hypergradient(self) -> torch.Tensor:
        """dw_S/dλ_j = −A⁻¹ e_j w_j, A = X_SᵀX_S/n + diag(λ_S); zero off the support."""
        S = self.support
        gv = self.Xv.T @ (self.Xv @ self.w - self.yv)
        out = torch.zeros_like(self.w)
        out[S] = -self.w[S] * torch.linalg.solve(self._matrix(), gv[S])
        return out


class Nash:
    """A two-player quadratic game: player 1 minimises ½xᵀPx + xᵀCy − aᵀx over x, player 2
    ½yᵀQy + yᵀDx − cᵀy over y. The equilibrium is the root of F = (Px + Cy − a, Qy + Dx − c), linear
    with the non-symmetric Jacobian M = [[P, C], [D, Q]]; the hyperparameters are a and c."""

    def __init__(self, nx: int = 4, ny: int = 5, seed: int = 3) -> None:
        g = _gen(seed)

        def spd(k: int) -> torch.Tensor:
            a = torch.randn(k, k, generator=g, dtype=DT)
            return a @ a.T / k + torch.eye(k, dtype=DT)

        self.P, self.Q = spd(nx), spd(ny)
        self.C = torch.randn(nx, ny, generator=g, dtype=DT)
        self.D = -self.C.T + 0.3 * torch.randn(ny, nx, generator=g, dtype=DT)
        self.M = torch.cat([torch.cat([self.P, self.C], 1), torch.cat([self.D, self.Q], 1)], 0)
        self.h = {"a": torch.randn(nx, generator=g, dtype=DT), "c": torch.randn(ny, generator=g, dtype=DT)}
        self.target = torch.randn(nx + ny, generator=g, dtype=DT)
        sol = torch.linalg.solve(self.M, torch.cat([self.h["a"], self.h["c"]]))
        self.w = {"x": sol[:nx], "y": sol[nx:]}
        self.nx = nx

    def F(self, p: dict, h: dict, batch: object = None) -> dict:
        x, y = p["x"], p["y"]
        return {"x": self.P @ x + self.C @ y - h["a"], "y": self.Q @ y + self.D @ x - h["c"]}

    def outer(self, p: dict, h: dict, batch: object = None) -> torch.Tensor:
        return 0.5 * ((torch.cat([p["x"], p["y"]]) - self.target) ** 2).sum() + (h["a"] ** 2).sum()

    def hypergradient(self) -> torch.Tensor:
        """w* = M⁻¹(a, c), so dL/d(a, c) = M⁻ᵀ ∇_wL, plus the direct term 2a."""
        g = torch.cat([self.w["x"], self.w["y"]]) - self.target
        out = torch.linalg.solve(self.M.T, g)
        out[: self.nx] += 2 * self.h["a"]
        return out
