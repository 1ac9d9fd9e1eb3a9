"""The estimators, as small frozen configuration objects handed to ``hypergradient(method=...)``.

Each one states the formula it computes; ``docs/estimators.md`` derives them. Notation: inner
objective f (training loss), outer objective F (validation loss), H = ∂²_{ww} f, and the implicit
function theorem at a stationary point of f:

    dF/dλ = ∂_λF − (∂²_{λw} f)ᵀ v,   (H + δI) v = ∂_wF.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from hypergrad import tree
from hypergrad.errors import HypergradInputError
from hypergrad.linearization import check_hvp_mode
from hypergrad.operator import LinearOperator, MatVec
from hypergrad.preconditioners import Jacobi
from hypergrad.solvers import (
    SolveInfo,
    bicgstab,
    conjugate_gradient,
    dense_solve,
    fixed_point,
    gmres,
    largest_eigenvalue,
    minres,
    neumann_series,
    normal_cg,
    warm_start,
)
from hypergrad.user_code import call

Solution = tuple[tree.Tree, SolveInfo]


def _positive_int(obj: object, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HypergradInputError(f"{type(obj).__name__}({name}={value!r}): expected an integer >= {minimum}")


def _nonnegative(obj: object, name: str, value: Any, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (strict and value == 0) or value == float("inf"):
        bound = "> 0" if strict else ">= 0"
        raise HypergradInputError(f"{type(obj).__name__}({name}={value!r}): expected a finite number {bound}")


def _step(obj: object, value: Any) -> None:
    if value == "auto":
        return
    _nonnegative(obj, "lr", value, strict=True)


def _iterations(obj: Any) -> None:
    """The stopping fields of an iterative solver: ``max_iter`` (an integer >= 1) and ``tol`` (finite, >= 0)."""
    _positive_int(obj, "max_iter", obj.max_iter)
    _nonnegative(obj, "tol", obj.tol)


def _products(obj: Any) -> None:
    """The product fields of an iterative solver: ``hvp`` (a product mode) and ``check_every`` (None or >= 1)."""
    check_hvp_mode(obj.hvp)
    if obj.check_every is not None:
        _positive_int(obj, "check_every", obj.check_every)


def _auto_step(lr: float | str, op: LinearOperator, like: tree.Tree, damping: float = 0.0) -> float | torch.Tensor:
    """γ = ``lr``, or for ``"auto"`` 1/(λ_max(A) + δ) by power iteration (20 products)."""
    if lr != "auto":
        return float(lr)
    return 1.0 / (largest_eigenvalue(op.matvec, like) + damping)


def _checked(preconditioner: Callable[[dict], dict] | None) -> MatVec | None:
    """The user's preconditioner, with its output checked against its input's keys and shapes."""
    if preconditioner is None:
        return None

    def apply(r: tree.Tree) -> tree.Tree:
        out = call(preconditioner, "CG preconditioner(r)", "a preconditioned CG iteration", r)
        if not isinstance(out, dict):
            raise HypergradInputError(f"CG preconditioner returned a {type(out).__name__}; expected a dict like params")
        tree.check_like(r, out, "CG preconditioner output")
        return out

    return apply


def _damped(matvec: MatVec, damping: float) -> MatVec:
    return (lambda v: tree.add(matvec(v), v, damping)) if damping else matvec


def _from_guess(solve: Callable[[tree.Tree, float, float], Solution], matvec: MatVec, b: tree.Tree,
                x0: tree.Tree | None, tol: float) -> Solution:
    """``solve(rhs, tol, atol)`` from zero, or from the rescaled guess ``x0`` (:func:`~hypergrad.solvers.warm_start`).

    From a guess x the solver finds the correction d of ``A d = b − A x`` and returns x + d; its
    residual is the residual of the original system, and the tolerance stays tol·‖b‖ (not relative
    to the smaller right-hand side of the correction). ``info.extra["warm_start_scale"]`` is the α
    applied to the guess (0: dropped, as no better than zero).
    """
    if x0 is None:
        return solve(b, tol, 0.0)
    x, r, alpha = warm_start(matvec, b, x0)
    d, info = solve(r, 0.0, tol * float(tree.norm(b)))
    return tree.add(x, d), info.replace(hvps=info.hvps + 1, extra={**info.extra, "warm_start_scale": float(alpha)})


def _contraction(trace: tuple[float, ...], window: int = 5) -> float:
    """Per-step factor of the residual over the last ``window`` steps: ρ(∂_wT) for the fixed-point iteration."""
    k = min(window, len(trace) - 1)
    if k < 1 or not trace[-1 - k] > 0:
        return float("nan")
    return (trace[-1] / trace[-1 - k]) ** (1.0 / k)


@dataclass(frozen=True)
class FirstOrder:
    """DARTS first order: ``dF/dλ ≈ ∂_λF(w, λ)`` (v = 0). Cost: one gradient of F.

    Exact only when w does not depend on λ; the baseline of Liu et al., "DARTS: Differentiable
    Architecture Search", ICLR 2019.
    """


@dataclass(frozen=True)
class OneStep:
    """DARTS second order: differentiate ``F(w − ξ∇_w f(w, λ), λ)`` through one inner SGD step.

    With ``w' = w − ξ∇_w f(w, λ)``:  ``dF/dλ ≈ ∂_λF(w', λ) − ξ (∂²_{λw} f(w, λ))ᵀ ∇_{w'}F(w', λ)``.
    The mixed product is taken by central differences of ∂_λf at ``w ± εv``, ε = 0.01/‖v‖, as DARTS
    does (``finite_difference=True``), or exactly by double backward. Cost: 4 gradients (FD) or
    3 gradients + 1 mixed product. Liu et al., ICLR 2019, eq. (7)–(8).

    Args:
        lr: the virtual step ξ (DARTS: the current weight learning rate).
        finite_difference: central differences (True) or an exact mixed product (False).
        fd_scale: ε = fd_scale/‖v‖.
    """

    lr: float = 0.01
    finite_difference: bool = True
    fd_scale: float = 0.01

    def __post_init__(self) -> None:
        _nonnegative(self, "lr", self.lr)
        _nonnegative(self, "fd_scale", self.fd_scale, strict=True)


@dataclass(frozen=True)
class Exact:
    """Implicit function theorem with the Hessian materialised and solved by LU.

    ``v = (H + δI)⁻¹ ∂_wF``, ``dF/dλ = ∂_λF − (∂²_{λw} f)ᵀ v``. Cost: n HVPs to build H (n = number
    of inner parameters), O(n²) memory, O(n³) time: tests and small problems only.
    """

    damping: float = 0.0
    hvp: str = "reverse"

    def __post_init__(self) -> None:
        _nonnegative(self, "damping", self.damping)
        check_hvp_mode(self.hvp)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        """``(A + δI)⁻¹ b`` by LU on the materialised matrix (a starting guess is not needed)."""
        return dense_solve(op.matvec, b, damping=self.damping, symmetric=op.symmetric)


@dataclass(frozen=True)
class CG:
    """Implicit function theorem, ``(H + δI) v = ∂_wF`` solved by conjugate gradient.

    Exact (to the tolerance) at a stationary point of f when H + δI is positive definite. Cost: at most
    ``max_iter`` HVPs (the graph of ∂_wf is built once) + 1 mixed product + 1 gradient of F.
    Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016; Rajeswaran et
    al., "Meta-Learning with Implicit Gradients", NeurIPS 2019.

    Args:
        max_iter: most CG iterations.
        tol: stop when ‖residual‖ ≤ tol·‖∂_wF‖.
        damping: δ ≥ 0 (proximal regularisation; makes an indefinite H solvable, biases v).
        preconditioner: ``hg.Jacobi(...)`` (the diagonal, given or estimated: :class:`~hypergrad.Jacobi`),
            a function ``r -> M⁻¹ r`` on parameter dicts, or None.
        hvp: product mode (``"reverse"``, ``"forward"``, ``"finite_difference"``).
        check_every: iterations between host reads of the residual (None: 1 on CPU, 10 on GPU).
    """

    max_iter: int = 100
    tol: float = 1e-10
    damping: float = 0.0
    preconditioner: Jacobi | Callable[[dict], dict] | None = None
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _iterations(self)
        _nonnegative(self, "damping", self.damping)
        check_hvp_mode(self.hvp)
        if not (self.preconditioner is None or isinstance(self.preconditioner, Jacobi) or callable(self.preconditioner)):
            raise HypergradInputError(f"CG(preconditioner={self.preconditioner!r}): expected hg.Jacobi(...), a callable "
                                      "r -> M⁻¹r, or None")
        if self.check_every is not None:
            _positive_int(self, "check_every", self.check_every)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        precondition = (self.preconditioner.build(op, b, self.damping) if isinstance(self.preconditioner, Jacobi)
                        else _checked(self.preconditioner))
        return _from_guess(lambda rhs, tol, atol: conjugate_gradient(
            op.matvec, rhs, max_iter=self.max_iter, tol=tol, atol=atol, damping=self.damping,
            preconditioner=precondition, check_every=self.check_every), _damped(op.matvec, self.damping), b, x0, self.tol)


@dataclass(frozen=True)
class MINRES:
    """Implicit function theorem, ``(H + δI) v = ∂_wF`` solved by MINRES.

    For symmetric indefinite H (saddle points, early-stopped non-convex inner problems), where CG can
    break down. Cost: at most ``max_iter`` HVPs + 1 mixed product + 1 gradient of F.
    Paige & Saunders, "Solution of sparse indefinite systems of linear equations", 1975.
    """

    max_iter: int = 100
    tol: float = 1e-10
    damping: float = 0.0
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _iterations(self)
        if not isinstance(self.damping, (int, float)) or self.damping != self.damping:
            raise HypergradInputError(f"MINRES(damping={self.damping!r}): expected a finite number")
        _products(self)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        return _from_guess(lambda rhs, tol, atol: minres(
            op.matvec, rhs, max_iter=self.max_iter, tol=tol, atol=atol, damping=self.damping,
            check_every=self.check_every), _damped(op.matvec, self.damping), b, x0, self.tol)


@dataclass(frozen=True)
class Neumann:
    """Implicit function theorem with ``v ≈ γ Σ_{k=0..K} (I − γH)^k ∂_wF`` (K = ``terms``).

    Converges to H⁻¹∂_wF as K → ∞ when the eigenvalues of H lie in (0, 2/γ). Cost: K HVPs + 1 mixed
    product + 1 gradient of F. ``lr="auto"`` sets γ = 1/λ_max from 20 power-iteration HVPs.
    Lorraine, Vicol & Duvenaud, "Optimizing Millions of Hyperparameters by Implicit
    Differentiation", AISTATS 2020.
    """

    terms: int = 5
    lr: float | Literal["auto"] = 0.01
    hvp: str = "reverse"

    def __post_init__(self) -> None:
        _positive_int(self, "terms", self.terms, minimum=0)
        _step(self, self.lr)
        check_hvp_mode(self.hvp)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        """The truncated series from zero: a series has no starting guess."""
        return neumann_series(op.matvec, b, terms=self.terms, lr=_auto_step(self.lr, op, b))


@dataclass(frozen=True)
class StochasticNeumann(Neumann):
    """iDARTS: the Neumann series with each Hessian term on a fresh inner mini-batch.

    ``dF/dλ ≈ ∂_λF − γ (∂²_{λw} f_{B₀})ᵀ Σ_{k=0..K} Π_{j=1..k} (I − γ H_{B_j}) ∂_wF``, each B a batch
    drawn by calling ``inner_batch()``; with independent batches every term is an unbiased estimate
    of its full-batch value. K = 0 gives the DARTS second-order form at w. Cost: K HVPs (each on its
    own batch, so each builds its own graph) + 1 mixed product + 1 gradient of F; K + 1 batches.
    Zhang et al., "Differentiable Architecture Search with Stochastic Implicit Gradients", ICML 2021
    (paper defaults: K = 2, γ = the weight learning rate).

    ``share_batch=True`` (K ≥ 1) evaluates the mixed product on the last Hessian term's batch,
    reusing the graph that term built: K batches and K graphs instead of K + 1, one graph build less
    per hypergradient. The mixed product and the last Hessian term are then correlated, so the
    estimator's expectation differs from the default's by a term of order γ² (their covariance);
    the default keeps every factor on an independent batch.
    """

    share_batch: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.share_batch, bool):
            raise HypergradInputError(f"StochasticNeumann share_batch={self.share_batch!r}; expected True or False")
        if self.share_batch and self.lr == "auto":
            raise HypergradInputError("StochasticNeumann share_batch=True needs a numeric lr: lr='auto' would need "
                                      "a batch of its own for the power iteration")

    @property
    def shares_batch(self) -> bool:
        """Whether the mixed product reuses the last Hessian term's batch (so no batch of its own is drawn)."""
        return self.share_batch and self.terms > 0

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        if op.sample is None:
            raise HypergradInputError("StochasticNeumann needs an operator that draws inner batches; "
                                      "a root or fixed-point condition has none")
        return neumann_series(op.sample, b, terms=self.terms, lr=_auto_step(self.lr, op, b), name="StochasticNeumann")


@dataclass(frozen=True)
class FixedPoint:
    """Implicit function theorem, ``(H + δI) v = ∂_wF`` by the Richardson iteration
    ``v ← v + γ(∂_wF − (H + δI)v)`` until ‖residual‖ ≤ tol·‖∂_wF‖.

    The k-th iterate equals the k-term Neumann series; the residual is measured at each step.
    Cost: at most ``max_iter`` HVPs + 1 mixed product + 1 gradient of F.
    """

    lr: float | Literal["auto"] = "auto"
    max_iter: int = 100
    tol: float = 1e-10
    damping: float = 0.0
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _step(self, self.lr)
        _iterations(self)
        _nonnegative(self, "damping", self.damping)
        _products(self)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        """With ``lr="auto"``: γ = 1 for a fixed-point map (the plain adjoint iteration u ← (∂_wT)ᵀu + b),
        else 1/(λ_max + δ) by power iteration. For a condition, a stalled iteration reports its contraction."""
        lr = 1.0 if self.lr == "auto" and op.kind == "fixed_point" else _auto_step(self.lr, op, b, self.damping)
        x, info = _from_guess(lambda rhs, tol, atol: fixed_point(
            op.matvec, rhs, lr=lr, max_iter=self.max_iter, tol=tol, atol=atol, damping=self.damping,
            check_every=self.check_every), _damped(op.matvec, self.damping), b, x0, self.tol)
        if op.kind == "hessian" or not info.residual_trace or info.converged:
            return x, info
        rate = _contraction(info.residual_trace)
        info = info.replace(extra={**info.extra, "contraction": rate})
        if op.kind == "fixed_point" and (info.diverged or rate >= 1):
            info = info.replace(diverged=True, message=(
                f"FixedPoint: T is not contractive at the solution: the adjoint iteration u ← (∂_wT)ᵀu + ∂_wL "
                f"changes its residual by ×{rate:.3g} per step (spectral radius of ∂_wT ≥ 1); use GMRES()"))
        return x, info


@dataclass(frozen=True)
class GMRES:
    """Implicit function theorem with the linear system solved by restarted GMRES(m).

    Needs no symmetry: the solver for root and fixed-point conditions (``hg.Root``, ``hg.FixedPointMap``),
    whose system (∂_wF)ᵀ u = ∂_wL is not symmetric; it also solves the Hessian system of an
    ``inner_loss``. Minimises the residual over the Krylov space; each cycle of ``restart`` iterations
    keeps ``restart + 1`` vectors. Cost: at most ``max_iter`` products (a VJP of the condition, or an
    HVP) + one per restart + 1 mixed product + 1 gradient of the outer objective.
    Saad & Schultz, "GMRES", SIAM J. Sci. Stat. Comput., 1986.

    Args:
        max_iter: most Arnoldi iterations over all cycles.
        tol: stop when ‖residual‖ ≤ tol·‖∂_wL‖.
        restart: m, the basis size per cycle.
        hvp: product mode; for a condition ``"reverse"`` (autograd, the graph of F kept) or ``"forward"``
            (``torch.func.vjp``, traceable under ``torch.func`` transforms).
        check_every: iterations between host reads of the residual (None: 1 on CPU, 10 on GPU).
    """

    max_iter: int = 100
    tol: float = 1e-10
    restart: int = 20
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _iterations(self)
        _positive_int(self, "restart", self.restart)
        _products(self)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        return _from_guess(lambda rhs, tol, atol: gmres(
            op.matvec, rhs, restart=self.restart, max_iter=self.max_iter, tol=tol, atol=atol,
            check_every=self.check_every), op.matvec, b, x0, self.tol)


@dataclass(frozen=True)
class BiCGSTAB:
    """Implicit function theorem with the linear system solved by BiCGSTAB.

    Needs no symmetry; short recurrences (six vectors, whatever the iteration count), two products per
    iteration; its residual is not monotone and it can break down (``info.message`` says so).
    Cost: at most 2·``max_iter`` products + 1 mixed product + 1 gradient of the outer objective.
    van der Vorst, "Bi-CGSTAB", SIAM J. Sci. Stat. Comput., 1992.
    """

    max_iter: int = 100
    tol: float = 1e-10
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _iterations(self)
        _products(self)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        return _from_guess(lambda rhs, tol, atol: bicgstab(
            op.matvec, rhs, max_iter=self.max_iter, tol=tol, atol=atol, check_every=self.check_every),
            op.matvec, b, x0, self.tol)


@dataclass(frozen=True)
class NormalCG:
    """Implicit function theorem with the linear system A u = b solved by CG on A Aᵀ y = b, u = Aᵀ y.

    For a condition, A = (∂_wF)ᵀ: each iteration is one VJP and one JVP of F (forward mode,
    ``torch.func.jvp``, so F must be ``torch.func``-transformable). Converges for any nonsingular A, at
    the rate of κ(A)²: the robust fallback when GMRES stalls or BiCGSTAB breaks down. Cost: at most
    2·``max_iter`` + 1 products + 1 mixed product + 1 gradient of the outer objective.
    Hestenes & Stiefel, 1952; Craig, 1955.
    """

    max_iter: int = 100
    tol: float = 1e-10
    hvp: str = "reverse"
    check_every: int | None = None

    def __post_init__(self) -> None:
        _iterations(self)
        _products(self)

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        return _from_guess(lambda rhs, tol, atol: normal_cg(
            op.matvec, op.rmatvec, rhs, max_iter=self.max_iter, tol=tol, atol=atol, check_every=self.check_every),
            op.matvec, b, x0, self.tol)


@dataclass(frozen=True)
class Auto:
    """The dense solve for a small system, an iterative method for a large one.

    With n inner variables, :class:`Exact` costs n products and an n×n LU, exact to round-off; an
    iterative method costs one product per iteration and O(n) memory. Below ``dense_below`` the dense
    solve is chosen: on a badly conditioned small system (ijcnn1's 22 features, κ ~ 1e8) CG needs far
    more than n products to meet a tight tolerance. The iterative method's ``damping`` carries over to
    the dense solve; a starting guess serves only the iterative one.

    Args:
        dense_below: the largest n solved densely.
        iterative: the method above it; None picks CG for an inner loss and GMRES for a condition.
        hvp: the product mode of either (replaces the iterative method's own).
    """

    dense_below: int = 200
    iterative: CG | MINRES | FixedPoint | GMRES | BiCGSTAB | NormalCG | None = None
    hvp: str = "reverse"

    def __post_init__(self) -> None:
        _positive_int(self, "dense_below", self.dense_below, minimum=0)
        if self.iterative is not None and not isinstance(self.iterative, (CG, MINRES, FixedPoint, GMRES, BiCGSTAB,
                                                                          NormalCG)):
            raise HypergradInputError(f"Auto(iterative={self.iterative!r}): expected an iterative method (CG, MINRES, "
                                      "FixedPoint, GMRES, BiCGSTAB, NormalCG) or None")
        check_hvp_mode(self.hvp)

    def choose(self, op: LinearOperator, b: tree.Tree) -> Exact | CG | MINRES | FixedPoint | GMRES | BiCGSTAB | NormalCG:
        """The method for this system: Exact when n ≤ ``dense_below``, else the iterative one."""
        iterative = dataclasses.replace(self.iterative or (CG() if op.symmetric else GMRES()), hvp=self.hvp)
        if sum(x.numel() for x in b.values()) <= self.dense_below:
            return Exact(damping=getattr(iterative, "damping", 0.0), hvp=self.hvp)
        return iterative

    def solve(self, op: LinearOperator, b: tree.Tree, x0: tree.Tree | None = None) -> Solution:
        method = self.choose(op, b)
        if not op.symmetric and not isinstance(method, CONDITION_METHODS):
            raise HypergradInputError(f"Auto(iterative={type(method).__name__}()) needs a symmetric system; a root or "
                                      "fixed-point condition's is not: use GMRES, BiCGSTAB, NormalCG or FixedPoint")
        x, info = method.solve(op, b, x0)
        return x, info.replace(extra={**info.extra, "chosen": type(method).__name__})


@dataclass(frozen=True)
class Unrolled:
    """Reverse-mode differentiation through T inner steps: the reference the others are checked against.

    Runs ``w_{t+1} = w_t − η m_{t+1}``, ``m_{t+1} = μ m_t + ∇_w f(w_t, λ; B_t)`` from ``w_0 = params``
    with the graph kept, then differentiates ``F(w_T, λ)`` with respect to λ. Converges to the
    implicit hypergradient as T → ∞ on a strongly convex f (with η small enough). Cost: T gradients
    forward, T HVP-sized steps backward, memory O(T · |w|). Maclaurin et al., ICML 2015; Franceschi
    et al., "Forward and Reverse Gradient-Based Hyperparameter Optimization", ICML 2017.

    Args:
        steps: T ≥ 1.
        lr: the inner step η.
        momentum: heavy-ball μ in [0, 1).
    """

    steps: int = 100
    lr: float = 0.1
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _positive_int(self, "steps", self.steps)
        _nonnegative(self, "lr", self.lr, strict=True)
        _nonnegative(self, "momentum", self.momentum)
        if self.momentum >= 1:
            raise HypergradInputError(f"Unrolled(momentum={self.momentum!r}): expected a number in [0, 1)")


Method = (FirstOrder | OneStep | Exact | CG | MINRES | Neumann | StochasticNeumann | FixedPoint | GMRES | BiCGSTAB
          | NormalCG | Auto | Unrolled)
ImplicitMethod = Exact | CG | MINRES | Neumann | StochasticNeumann | FixedPoint | GMRES | BiCGSTAB | NormalCG | Auto
IMPLICIT_METHODS = (Exact, CG, MINRES, Neumann, StochasticNeumann, FixedPoint, GMRES, BiCGSTAB, NormalCG, Auto)
METHODS = (FirstOrder, OneStep, Exact, CG, MINRES, Neumann, StochasticNeumann, FixedPoint, GMRES, BiCGSTAB, NormalCG,
           Auto, Unrolled)
# What a root or fixed-point condition accepts: solvers that need no symmetry (and FirstOrder, which solves nothing);
# Auto checks its choice when it sees the operator.
CONDITION_METHODS = (FirstOrder, Exact, FixedPoint, GMRES, BiCGSTAB, NormalCG, Auto)
