"""The search: its settings and methods (:mod:`.config`), the ``hypergrad`` estimator of each method
(:mod:`.estimators`), and the loop itself with its checkpoints (:mod:`.loop`)."""
