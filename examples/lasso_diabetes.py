"""Lasso with one L1 weight per feature, tuned by its hypergradient, on scikit-learn's diabetes data.

The inner problem is the lasso  w*(λ) = argmin_w ‖Xw − y‖²/(2n) + Σ_j λ_j |w_j|,  not smooth, so there
is no Hessian to invert; but w* is a fixed point of the proximal-gradient (ISTA) map
T(w, λ) = S_{ηλ}(w − η Xᵀ(Xw − y)/n), and ``hg.FixedPointMap(T)`` differentiates through that
(GMRES on (I − ∂_wT)ᵀu = ∂_wL). The outer loss is the validation error; the ten λ_j are fitted by
Adam on log λ. Checked against: scikit-learn's coordinate descent for the weighted lasso (the inner
solution), central finite differences of the validation loss (the hypergradient), and ``LassoCV``
(one λ for all features, 5-fold cross-validation on the same training rows).

    python examples/lasso_diabetes.py [--smoke] [--png lasso_diabetes.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import train_test_split

import hypergrad as hg


def load() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train / validation / test splits (50/25/25), features standardised and y centred on train."""
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, random_state=0)
    X_va, X_te, y_va, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0)
    mu, sd, y0 = X_tr.mean(0), X_tr.std(0), y_tr.mean()
    as_t = lambda X, y: (torch.tensor((X - mu) / sd), torch.tensor(y - y0))  # noqa: E731
    return {"train": as_t(X_tr, y_tr), "val": as_t(X_va, y_va), "test": as_t(X_te, y_te)}


def ista(eta: float):
    """T(w, λ): one proximal-gradient step of size η; the lasso solution is its fixed point."""
    def step(p: dict, h: dict, batch: tuple) -> dict:
        X, y = batch
        z = p["w"] - eta * X.T @ (X @ p["w"] - y) / len(y)
        return {"w": torch.sign(z) * (z.abs() - eta * h["log_lam"].exp()).clamp_min(0)}
    return step


def mse(p: dict, h: dict, batch: tuple) -> torch.Tensor:
    X, y = batch
    return ((X @ p["w"] - y) ** 2).mean()


def solve_lasso(lam: torch.Tensor, batch: tuple, w: torch.Tensor, eta: float, iters: int) -> torch.Tensor:
    """FISTA from a warm start (the forward solver may be anything: only the fixed point matters)."""
    h, step = {"log_lam": lam.log()}, ista(eta)
    w_prev, t = w, 1.0
    for _ in range(iters):
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        v = w + (t - 1) / t_next * (w - w_prev)
        w_prev, w, t = w, step({"w": v}, h, batch)["w"], t_next
    return w


def sklearn_weighted_lasso(lam: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same weighted lasso by coordinate descent: rescale column j by 1/λ_j, use α = 1."""
    fit = Lasso(alpha=1.0, fit_intercept=False, tol=1e-14, max_iter=200_000).fit(X / lam, y)
    return fit.coef_ / lam


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few outer steps (seconds), for the tests")
    parser.add_argument("--png", default="lasso_diabetes.png", help="where to write the figure")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = load()
    X, y = data["train"]
    eta = 1 / torch.linalg.matrix_norm(X.T @ X / len(y), ord=2).item()    # 1/L: T is then non-expansive
    condition = hg.FixedPointMap(ista(eta))
    steps, fista_iters = (30, 500) if args.smoke else (300, 2000)

    cv = LassoCV(cv=5, fit_intercept=False, alphas=200).fit(X.numpy(), y.numpy())
    log_lam = torch.full((X.shape[1],), float(np.log(cv.alpha_)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_lam], lr=0.05)
    w, history = torch.zeros(X.shape[1], dtype=torch.float64), []
    for _ in range(steps):
        w = solve_lasso(log_lam.detach().exp(), data["train"], w, eta, fista_iters)
        opt.zero_grad()
        res = hg.backward(mse, condition, {"w": w}, {"log_lam": log_lam},
                          outer_batch=data["val"], inner_batch=data["train"], method=hg.GMRES(tol=1e-10))
        history.append(res.outer_value.item())
        opt.step()
    lam = log_lam.detach().exp()
    w = solve_lasso(lam, data["train"], w, eta, 20 * fista_iters)

    # Independent checks: the inner solution against coordinate descent, the hypergradient against
    # central differences of the validation loss through that solver.
    w_cd = sklearn_weighted_lasso(lam.numpy(), X.numpy(), y.numpy())
    res = hg.hypergradient(mse, condition, {"w": w}, {"log_lam": log_lam.detach()},
                           outer_batch=data["val"], inner_batch=data["train"], method=hg.GMRES(tol=1e-12))
    j = int(np.argmax(np.abs(w_cd)))                      # a coordinate on the support
    eps, val = 1e-5, lambda w_: mse({"w": torch.tensor(w_)}, {}, data["val"]).item()
    bumped = [sklearn_weighted_lasso(lam.numpy() * np.exp(s * eps * np.eye(len(lam))[j]), X.numpy(), y.numpy())
              for s in (1, -1)]
    fd = (val(bumped[0]) - val(bumped[1])) / (2 * eps)

    cv_w = {"w": torch.tensor(cv.coef_)}
    result = {
        "val_mse": mse({"w": w}, {}, data["val"]).item(), "test_mse": mse({"w": w}, {}, data["test"]).item(),
        "lassocv_val_mse": mse(cv_w, {}, data["val"]).item(), "lassocv_test_mse": mse(cv_w, {}, data["test"]).item(),
        "inner_vs_sklearn": float(np.abs(w.numpy() - w_cd).max() / np.abs(w_cd).max()),
        "hypergrad_vs_fd": abs(res.grads["log_lam"][j].item() - fd) / abs(fd),
        "zeros": int((w == 0).sum()), "lassocv_zeros": int((cv.coef_ == 0).sum()),
        "gmres_iterations": res.info.iterations,
    }
    print(f"per-feature λ (Adam on validation, {steps} steps): val MSE {result['val_mse']:.1f}, "
          f"test MSE {result['test_mse']:.1f}, {result['zeros']} of {len(w)} weights zero")
    print(f"LassoCV (one λ = {cv.alpha_:.3g}, 5-fold CV):        val MSE {result['lassocv_val_mse']:.1f}, "
          f"test MSE {result['lassocv_test_mse']:.1f}, {result['lassocv_zeros']} of {len(w)} weights zero")
    print(f"checks: inner solution vs scikit-learn {result['inner_vs_sklearn']:.1e} (relative), "
          f"hypergradient vs finite differences {result['hypergrad_vs_fd']:.1e} (relative, "
          f"GMRES {result['gmres_iterations']} iterations)")

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(history, label="per-feature λ (hypergradient)")
    a.axhline(result["lassocv_val_mse"], color="gray", ls="--", label="LassoCV")
    a.set(xlabel="outer step", ylabel="validation MSE", title="validation error")
    a.legend()
    names = load_diabetes().feature_names
    b.bar(np.arange(len(w)) - 0.2, w.numpy(), 0.4, label="per-feature λ")
    b.bar(np.arange(len(w)) + 0.2, cv.coef_, 0.4, label="LassoCV", color="gray")
    b.set_xticks(range(len(w)), names, rotation=45)
    b.set(title="coefficients (standardised features)")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    return result


if __name__ == "__main__":
    main()
