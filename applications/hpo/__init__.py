"""Gradient-based hyperparameter optimisation with hypergrad, measured against black-box search.

Tasks (:mod:`.logreg_l2`, :mod:`.weight_decay`, :mod:`.reweight`) implement :class:`.task.Task`;
:func:`.outer_loop.implicit_search` tunes them by implicit hypergradients, and
:func:`.baselines.trial_search` by random, grid or TPE search. Command lines: :mod:`.run` (one run)
and :mod:`.compare` (chart and table over runs). See docs/hpo.md.

Nothing is imported here, so that ``python -m applications.hpo.compare`` does not load torch.
"""
