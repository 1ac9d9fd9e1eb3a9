"""The ijcnn1 hyperparameter-selection problem of benchopt's ``benchmark_bilevel``, solved to a target
suboptimality as fast as the library allows, and side by side with peers (``docs/hpo.md``).

``problem``: the data, the bilevel objective, the Newton inner solver and the exact evaluator;
``outer``: the outer optimisers (L-BFGS-B with the box, Adam, SGD) driving hypergradients;
``peers``: the same runs with jaxopt and torchopt computing the hypergradient;
``command``: ``python -m applications.hpo.ijcnn1`` runs them and writes the curve.
"""

from applications.hpo.ijcnn1.command import build_parser, cli

__all__ = ["build_parser", "cli"]
