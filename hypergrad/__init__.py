"""hypergrad: hypergradients of bilevel problems on PyTorch.

    min_λ F(w*(λ), λ)   s.t.   w*(λ) = argmin_w f(w, λ)   (or a root / fixed point: hg.Root, hg.FixedPointMap)

Public surface: :func:`hypergradient`, :func:`backward`, :func:`implicit`, the method objects, the
result and diagnostics records, the errors, and :func:`all_reduce_mean` (their ``reduce=`` for
data-parallel use).
"""

from hypergrad.api import Hypergradient, backward, hypergradient
from hypergrad.conditions import FixedPointMap, Root
from hypergrad.distributed import all_reduce_mean
from hypergrad.errors import HypergradInputError, Interrupted, NonFiniteError
from hypergrad.implicit import implicit
from hypergrad.linearization import WeightDecay
from hypergrad.methods import (
    CG,
    GMRES,
    MINRES,
    Auto,
    BiCGSTAB,
    Exact,
    FirstOrder,
    FixedPoint,
    Neumann,
    NormalCG,
    OneStep,
    StochasticNeumann,
    Unrolled,
)
from hypergrad.preconditioners import Jacobi
from hypergrad.solvers import SolveInfo

__version__ = "0.1.0"

__all__ = [
    "CG", "GMRES", "MINRES", "Auto", "BiCGSTAB", "Exact", "FirstOrder", "FixedPoint", "FixedPointMap", "Hypergradient",
    "HypergradInputError", "Interrupted", "Jacobi", "Neumann", "NonFiniteError", "NormalCG", "OneStep", "Root",
    "SolveInfo", "StochasticNeumann", "Unrolled", "WeightDecay", "all_reduce_mean", "backward", "hypergradient",
    "implicit",
]
