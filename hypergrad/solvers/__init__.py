"""Linear solvers for ``(∂²_{ww} f + δI) v = b``, each returning ``(solution, SolveInfo)``."""

from hypergrad.solvers.cg import conjugate_gradient
from hypergrad.solvers.dense import dense_matrix, dense_solve
from hypergrad.solvers.fixed_point import fixed_point
from hypergrad.solvers.info import SolveInfo
from hypergrad.solvers.minres import minres
from hypergrad.solvers.neumann import largest_eigenvalue, neumann_series

__all__ = ["SolveInfo", "conjugate_gradient", "dense_matrix", "dense_solve", "fixed_point",
           "largest_eigenvalue", "minres", "neumann_series"]
