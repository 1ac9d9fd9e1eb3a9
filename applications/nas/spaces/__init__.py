"""The search spaces: NAS-Bench-201 (:mod:`.nb201`) and DARTS (:mod:`.darts`), each as plain data (the
cell or genotype and its printed form) and as modules (operations, mixed cell, supernet).
:mod:`.registry` is what the search loop and the command lines see of a space (``--space``)."""
