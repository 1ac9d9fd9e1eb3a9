"""hypergrad: hypergradients of bilevel problems on PyTorch.

    min_λ F(w*(λ), λ)   s.t.   w*(λ) = argmin_w f(w, λ)

Public surface: :func:`hypergradient`, :func:`backward`, :func:`implicit`, the method objects, the
result and diagnostics records, and the errors.
"""

from hypergrad.api import Hypergradient, backward, hypergradient
from hypergrad.errors import HypergradInputError, NonFiniteError
from hypergrad.implicit import implicit
from hypergrad.methods import CG, MINRES, Exact, FirstOrder, FixedPoint, Neumann, OneStep, StochasticNeumann, Unrolled
from hypergrad.solvers import SolveInfo

__version__ = "0.1.0"

__all__ = [
    "CG", "MINRES", "Exact", "FirstOrder", "FixedPoint", "Hypergradient", "HypergradInputError", "Neumann",
    "NonFiniteError", "OneStep", "SolveInfo", "StochasticNeumann", "Unrolled", "backward", "hypergradient",
    "implicit",
]
