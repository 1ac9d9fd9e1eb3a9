"""The NAS-Bench-201 space: the cell as data (:mod:`.genotype`), its operations (:mod:`.ops`), the mixed
and fixed cells (:mod:`.cell`), the macro network and supernet (:mod:`.network`), and the derivation of
the cell from α (:mod:`.derive`)."""
