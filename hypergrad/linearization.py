"""Hessian-vector and mixed second-derivative products of the inner objective, and the Jacobian
products of a root or fixed-point map (:class:`MapLinearization`, at the end).

For an inner objective ``f(w, λ)`` on one batch, a :class:`Linearization` at ``(w, λ)`` offers

* ``grad``       = ∂_w f,
* ``hvp(v)``     = (∂²_{ww} f) v,                 the Hessian-vector product,
* ``mixed(v)``   = (∂²_{λw} f)ᵀ v = ∂_λ ⟨∂_w f, v⟩, the mixed product the implicit function
  theorem needs once per hypergradient.

Three ways to compute the products (``mode``):

``"reverse"`` (default)
    Reverse-over-reverse: ∂_w f is computed once with ``create_graph=True`` and every product is one
    more backward pass through that graph. Measured on a 2-core CPU (``benchmarks/bench_hvp.py``)
    an HVP costs about 1.2–1.8 gradients once the graph exists, ~2–3 gradients including building it.
``"forward"``
    Forward-over-reverse with :func:`torch.func.jvp` of :func:`torch.func.grad`. No graph is kept
    between products, so memory stays at one gradient, but each product recomputes the gradient:
    measured ~4–5 gradients per product on CPU. Needs a loss that ``torch.func`` can transform.
``"finite_difference"``
    Central differences of the gradient, ``(∇f(w + εv) − ∇f(w − εv)) / 2ε`` with
    ``ε = fd_scale / ‖v‖`` (DARTS uses ``fd_scale = 0.01``). Two gradients per product, first-order
    memory, ``O(ε²)`` truncation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hypergrad import tree
from hypergrad.errors import HypergradInputError
from hypergrad.user_code import call

Loss = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], Any], torch.Tensor]

HVP_MODES = ("reverse", "forward", "finite_difference")


def check_hvp_mode(mode: str) -> None:
    if mode not in HVP_MODES:
        raise HypergradInputError(f"hvp={mode!r} is not a Hessian-vector product mode; expected one of {HVP_MODES}")


def as_scalar_loss(value: object, who: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise HypergradInputError(f"{who} returned {shape}; expected a scalar tensor")
    return value.reshape(())


def autograd_grads(outputs: torch.Tensor | list[torch.Tensor], inputs: Mapping[str, torch.Tensor],
           grad_outputs: list[torch.Tensor] | None = None, create_graph: bool = False,
           retain_graph: bool | None = None) -> dict[str, torch.Tensor]:
    """``torch.autograd.grad`` on dicts, zeros for inputs the outputs do not depend on."""
    outs = outputs if isinstance(outputs, list) else [outputs]
    keep = [i for i, o in enumerate(outs) if o.requires_grad]
    if not keep:
        return tree.zeros_like(inputs)
    got = torch.autograd.grad(
        [outs[i] for i in keep], list(inputs.values()),
        grad_outputs=None if grad_outputs is None else [grad_outputs[i] for i in keep],
        create_graph=create_graph, retain_graph=retain_graph, allow_unused=True,
    )
    return {k: torch.zeros_like(x) if g is None else g for (k, x), g in zip(inputs.items(), got)}


def call_loss(loss_fn: Loss, who: str, step: str, params: Mapping[str, torch.Tensor],
              hparams: Mapping[str, torch.Tensor], batch: Any) -> Any:
    """``loss_fn(params, hparams, batch)``; an exception inside names ``who`` (``inner_loss``), ``step`` and the batch."""
    return call(loss_fn, f"{who}(params, hparams, batch)", step, params, hparams, batch,
                batch_name=who.replace("loss", "batch"), batch=batch)


def loss_and_grads(loss_fn: Loss, params: Mapping[str, torch.Tensor], hparams: Mapping[str, torch.Tensor],
                   batch: Any, who: str, step: str = ""
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Value of ``loss_fn`` and its gradients with respect to ``params`` and ``hparams`` (detached).

    ``who`` (``"inner_loss"`` or ``"outer_loss"``) and ``step`` name the call in the note an exception
    raised inside ``loss_fn`` gains (:mod:`hypergrad.user_code`).
    """
    step = step or ("its gradients ∂_wF, ∂_λF" if who == "outer_loss" else "its gradients ∂_w f, ∂_λ f")
    w = tree.detach(params, True)
    lam = tree.detach(hparams, True)
    with torch.enable_grad():
        loss = as_scalar_loss(call_loss(loss_fn, who, step, w, lam, batch), who)
        g = autograd_grads(loss, {**{f"w/{k}": v for k, v in w.items()}, **{f"h/{k}": v for k, v in lam.items()}})
    gw = {k: g[f"w/{k}"] for k in w}
    gh = {k: g[f"h/{k}"] for k in lam}
    return loss.detach(), gw, gh


@dataclass(frozen=True)
class WeightDecay:
    """The inner objective ``f(w, λ) = loss(w, λ, batch) + (decay/2)‖w‖²``, whose L2 term is taken analytically.

    SGD's ``weight_decay`` minimises exactly this ``f``. Handed to :func:`~hypergrad.hypergradient`,
    :func:`~hypergrad.backward` or :func:`~hypergrad.implicit` as ``inner_loss``, its gradient is
    ``∂_w loss + decay·w`` and its Hessian-vector product ``(∂²_{ww} loss) v + decay·v``, each term added
    in one fused operation, and the mixed product is the loss's (the term does not depend on λ). Written
    into the loss instead, the term would be a sum over every weight tensor, differentiated again in
    every product. Called directly (as :class:`~hypergrad.Unrolled` does) it returns the sum.

    Args:
        loss: ``loss(params, hparams, batch) -> scalar``.
        decay: the L2 coefficient (SGD's ``weight_decay``), finite and >= 0.

    Example:
        >>> res = hg.hypergradient(val_loss, hg.WeightDecay(train_loss, 5e-4), w, alphas, ...)
    """

    loss: Loss
    decay: float

    def __post_init__(self) -> None:
        if not callable(self.loss):
            raise HypergradInputError(f"WeightDecay(loss={self.loss!r}): expected a callable (params, hparams, batch) -> scalar")
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) or not (
                math.isfinite(self.decay) and self.decay >= 0):
            raise HypergradInputError(f"WeightDecay(decay={self.decay!r}): expected a finite number >= 0")

    def __call__(self, params: dict[str, torch.Tensor], hparams: dict[str, torch.Tensor], batch: Any) -> Any:
        value = self.loss(params, hparams, batch)
        return value + 0.5 * self.decay * sum(torch.sum(p * p) for p in params.values())


_GRAPH_STEP = "∂_w f, whose graph the Hessian-vector and mixed products differentiate"


class Linearization:
    """Second-order products of ``inner_loss`` at ``(params, hparams)`` on one batch.

    Args:
        objective: the inner loss ``f(params, hparams, batch) -> scalar``, or a :class:`WeightDecay`, whose L2 term the
            gradient and the Hessian-vector products add analytically.
        params: the point ``w`` (name -> tensor); never modified.
        hparams: the point ``λ``; never modified.
        batch: the batch handed to ``inner_loss``.
        mode: ``"reverse"``, ``"forward"`` or ``"finite_difference"`` (module docstring).
        fd_scale: ε = fd_scale / ‖v‖ in finite-difference mode.

    Attributes:
        hvps: number of Hessian-vector products computed so far.
        mixed_products: number of mixed products computed so far.
    """

    def __init__(self, objective: Loss | WeightDecay, params: Mapping[str, torch.Tensor],
                 hparams: Mapping[str, torch.Tensor], batch: Any, mode: str = "reverse", fd_scale: float = 0.01) -> None:
        check_hvp_mode(mode)
        self.mode = mode
        self.fd_scale = fd_scale
        inner_loss: Loss
        if isinstance(objective, WeightDecay):
            inner_loss, self._decay = objective.loss, float(objective.decay)
        else:
            inner_loss, self._decay = objective, 0.0
        self._loss = inner_loss
        self._batch = batch
        self.hvps = 0
        self.mixed_products = 0
        if mode == "reverse":
            self._w = tree.detach(params, True)
            self._lam = tree.detach(hparams, True)
            with torch.enable_grad():
                loss = as_scalar_loss(call_loss(inner_loss, "inner_loss", _GRAPH_STEP, self._w, self._lam, batch),
                                      "inner_loss")
                g = autograd_grads(loss, self._w, create_graph=True)
            self._g_graph = list(g.values())
            self.grad = tree.detach(g)
        elif mode == "forward":
            self._w = tree.detach(params)
            self._lam = tree.detach(hparams)
            self.grad = self._grad_fn("w")(self._w)
        else:
            self._w = tree.detach(params)
            self._lam = tree.detach(hparams)
            _, self.grad, _ = loss_and_grads(inner_loss, self._w, self._lam, batch, "inner_loss", "∂_w f")
        self.grad = self._decayed(self.grad, tree.detach(self._w))

    def _decayed(self, product: dict[str, torch.Tensor], v: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``product + decay·v``: the L2 term's share of a gradient (v = w) or of a Hessian-vector product."""
        return tree.add(product, dict(v), self._decay) if self._decay else product

    def _grad_fn(self, wrt: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """w -> ∂_w f(w, λ) or w -> ∂_λ f(w, λ), as a torch.func-transformable function."""
        def loss(w: dict[str, torch.Tensor], lam: dict[str, torch.Tensor]) -> Any:
            return call_loss(self._loss, "inner_loss", "∂_w f or a forward-mode (torch.func) product", w, lam,
                             self._batch)

        if wrt == "w":
            return lambda w: torch.func.grad(lambda w_: loss(w_, self._lam))(w)
        return lambda w: torch.func.grad(lambda lam_: loss(w, lam_))(self._lam)

    def _product(self, v: dict[str, torch.Tensor], wrt: str) -> dict[str, torch.Tensor]:
        target = self._w if wrt == "w" else self._lam
        if self.mode == "reverse":
            return autograd_grads(self._g_graph, target, grad_outputs=list(v.values()), retain_graph=True)
        if self.mode == "forward":
            return torch.func.jvp(self._grad_fn(wrt), (self._w,), (v,))[1]
        size = tree.norm(v)
        eps = self.fd_scale / size.clamp_min(torch.finfo(size.dtype).tiny)

        def grad_at(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            _, gw, gh = loss_and_grads(self._loss, w, self._lam, self._batch, "inner_loss",
                                       "a finite-difference Hessian-vector or mixed product")
            return gw if wrt == "w" else gh

        plus, minus = grad_at(tree.add(self._w, v, eps)), grad_at(tree.add(self._w, v, -eps))
        return tree.scale(tree.sub(plus, minus), 0.5 / eps)

    def hvp(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(∂²_{ww} f) v."""
        self.hvps += 1
        return self._decayed(self._product(v, "w"), v)

    def mixed(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(∂²_{λw} f)ᵀ v, a dict like ``hparams``."""
        self.mixed_products += 1
        return self._product(v, "h")


Map = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], Any], dict[str, torch.Tensor]]


def map_letter(who: str) -> str:
    """The letter of a condition's map in the docs and notes: ``T`` for ``FixedPointMap``, ``F`` for ``Root``."""
    return "T" if who == "FixedPointMap" else "F"


def call_map(fn: Map, who: str, step: str, params: Mapping[str, torch.Tensor], hparams: Mapping[str, torch.Tensor],
             batch: Any) -> Any:
    """``fn(params, hparams, batch)`` for a condition ``who`` (``Root``, ``FixedPointMap``); an exception inside
    names the condition and the function (``Root(F): stationarity(params, hparams, batch)``), ``step`` and
    the batch, which came in the ``inner_batch`` slot."""
    letter = map_letter(who)
    label = getattr(fn, "__name__", "")
    label = label if label.isidentifier() else letter  # a lambda or a partial: the letter of the docs
    return call(fn, f"{who}({letter}): {label}(params, hparams, batch)", step, params, hparams, batch,
                batch_name="inner_batch", batch=batch)


def as_map_output(value: object, like: Mapping[str, torch.Tensor], who: str) -> dict[str, torch.Tensor]:
    """``value`` as a dict with the keys (in the order) and shapes of ``like``, or a one-line error."""
    if not isinstance(value, Mapping):
        raise HypergradInputError(
            f"{who} returned a {type(value).__name__}; expected a dict like params with the keys {list(like)}")
    if set(value) == set(like):
        value = {k: value[k] for k in like}
    tree.check_like(like, value, f"{who} output")
    tree.check_tensor_dict(value, f"{who} output")
    return dict(value)


class MapLinearization:
    """Jacobian products of a map ``F(params, hparams, batch) -> dict like params`` at ``(w, λ)``.

    * ``value``           = F(w, λ),
    * ``vjp(u)``          = (∂_w F)ᵀ u: one backward pass, no double backward,
    * ``jvp(v)``          = (∂_w F) v: one forward-mode evaluation of F (``torch.func.jvp``),
    * ``vjp_hparams(u)``  = (∂_λ F)ᵀ u, the mixed product of a root condition.

    ``mode="reverse"`` evaluates F once with its autograd graph kept, and each VJP is one backward pass
    through it (about one evaluation of F). ``mode="forward"`` takes the VJPs from ``torch.func.vjp``
    instead, which ``torch.func`` transforms can trace (``implicit()`` under ``grad``/``vmap``).

    Args:
        fn: the map F (a root condition, or the map T of a fixed-point condition).
        params: the point ``w``; never modified.
        hparams: the point ``λ``; never modified.
        batch: the batch handed to ``fn``.
        mode: ``"reverse"`` or ``"forward"``.
        who: the condition (``"Root"``, ``"FixedPointMap"``), named in error messages and in the note an
            exception raised inside ``fn`` gains (:mod:`hypergrad.user_code`).

    Attributes:
        vjps: VJPs with respect to w computed so far.
        jvps: JVPs computed so far.
    """

    def __init__(self, fn: Map, params: Mapping[str, torch.Tensor], hparams: Mapping[str, torch.Tensor],
                 batch: Any, mode: str = "reverse", who: str = "condition") -> None:
        if mode not in ("reverse", "forward"):
            raise HypergradInputError(f"hvp={mode!r}: a condition's products are 'reverse' or 'forward' (VJPs), "
                                      "not finite differences")
        self.mode = mode
        self._fn = fn
        self._who = who
        self._batch = batch
        self.vjps = 0
        self.jvps = 0
        x = map_letter(who)
        if mode == "reverse":
            self._w = tree.detach(params, True)
            self._lam = tree.detach(hparams, True)
            step = f"{x}(w, λ), whose graph the Jacobian products (∂_w{x})ᵀu and (∂_λ{x})ᵀu differentiate"
            with torch.enable_grad():
                out = as_map_output(call_map(fn, who, step, self._w, self._lam, batch), params, who)
            self._out = list(out.values())
            self.value = tree.detach(out)
        else:
            self._w = tree.detach(params)
            self._lam = tree.detach(hparams)
            step = f"{x}(w, λ) traced by torch.func.vjp for the Jacobian products (∂_w{x})ᵀu and (∂_λ{x})ᵀu"
            traced = torch.func.vjp(lambda w, lam: as_map_output(call_map(fn, who, step, w, lam, batch), params, who),
                                    self._w, self._lam)
            self.value, self._vjp_fn = traced[0], traced[1]

    def vjp(self, u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(∂_w F)ᵀ u."""
        self.vjps += 1
        if self.mode == "reverse":
            return autograd_grads(self._out, self._w, grad_outputs=list(u.values()), retain_graph=True)
        return self._vjp_fn(u)[0]

    def vjp_hparams(self, u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(∂_λ F)ᵀ u, a dict like ``hparams``."""
        if self.mode == "reverse":
            return autograd_grads(self._out, self._lam, grad_outputs=list(u.values()), retain_graph=True)
        return self._vjp_fn(u)[1]

    def jvp(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(∂_w F) v."""
        self.jvps += 1
        x = map_letter(self._who)
        step = f"a Jacobian-vector product (∂_w{x})v (torch.func.jvp, one evaluation of {x} each)"
        out = torch.func.jvp(lambda w: call_map(self._fn, self._who, step, w, self._lam, self._batch),
                             (self._w,), (v,))[1]
        return {k: out[k] for k in self._w}
