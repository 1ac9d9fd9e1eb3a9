"""The DARTS space: the genotype as data and its derivation from α (:mod:`.genotype`), the operations
(:mod:`.ops`), and the mixed cell and supernet searched over (:mod:`.supernet`)."""
