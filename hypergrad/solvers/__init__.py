"""Linear solvers for ``(∂²_{ww} f + δI) v = b`` and for the non-symmetric ``(∂_wF)ᵀ u = v`` of a root
condition, each returning ``(solution, SolveInfo)``."""

from hypergrad.solvers.bicgstab import bicgstab
from hypergrad.solvers.cg import conjugate_gradient
from hypergrad.solvers.dense import dense_matrix, dense_solve
from hypergrad.solvers.fixed_point import fixed_point
from hypergrad.solvers.gmres import gmres
from hypergrad.solvers.info import SolveInfo
from hypergrad.solvers.minres import minres
from hypergrad.solvers.neumann import largest_eigenvalue, neumann_series
from hypergrad.solvers.normal_cg import normal_cg
from hypergrad.solvers.warm import warm_start

__all__ = ["SolveInfo", "bicgstab", "conjugate_gradient", "dense_matrix", "dense_solve", "fixed_point", "gmres",
           "largest_eigenvalue", "minres", "neumann_series", "normal_cg", "warm_start"]
