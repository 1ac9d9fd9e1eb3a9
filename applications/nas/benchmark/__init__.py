"""NAS-Bench-201 as a lookup: the bundled CSV table of cell accuracies and the optional NATS-Bench API
(:mod:`.table`)."""
