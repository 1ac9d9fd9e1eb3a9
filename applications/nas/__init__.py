"""Differentiable architecture search (DARTS, iDARTS, implicit CG/MINRES, random search with weight sharing).

The command lines are the modules here, each run as ``python -m applications.nas.<name>``:
:mod:`.search`, :mod:`.lookup`, :mod:`.train` and :mod:`.report`; what they do is in :mod:`.commands`.
The rest is one folder per part, each importing only from the parts listed before it:

* :mod:`.common`: datasets and batch streams, evaluation, data parallelism, atomic files.
* :mod:`.spaces`: the two search spaces (:mod:`.spaces.nb201`, :mod:`.spaces.darts`) and the registry
  the search loop chooses from by ``--space``.
* :mod:`.benchmark`: the NAS-Bench-201 table a derived cell is looked up in.
* :mod:`.searching`: the search loop, its settings and the hypergradient estimator of each ``--method``.
* :mod:`.retraining`: the networks a derived cell is retrained in.
* :mod:`.commands`: the command lines' argument parsing, output and figures.

See docs/nas.md.
"""
