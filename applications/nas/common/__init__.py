"""What the search and the retraining both use: offline datasets and resumable batch streams
(:mod:`.data`), evaluation on a whole image set (:mod:`.evaluation`), data parallelism under ``torchrun``
(:mod:`.distributed`) and atomic writes of results and checkpoints (:mod:`.files`)."""
