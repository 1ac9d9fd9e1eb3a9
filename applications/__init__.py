"""The applications of hypergrad: architecture search (:mod:`applications.nas`) and hyperparameter
optimisation (:mod:`applications.hpo`), each with command lines run as ``python -m applications....``.

A command launched that way checks here, before it imports anything, that the optional dependencies it
needs are installed (one line and exit status 2 if not; see :mod:`applications.cli_checks`).
"""

from applications.cli_checks import check_launched_command

check_launched_command()
