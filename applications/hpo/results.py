"""What a run leaves on disk: ``result.json`` and ``best_hparams.pt``, both written atomically.

A file is written to a temporary name in its destination directory and renamed over the target, so
a reader never sees half a result, even if the run is killed mid-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from .history import Record, Trace
from .task import Task

RESULT_FILE = "result.json"
HPARAMS_FILE = "best_hparams.pt"


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file, then rename it into place."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        # mkstemp makes the file private (0600); give it the permissions open() would (0666 less the umask).
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(handle.name, 0o666 & ~mask)
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _metrics(record: Record | None) -> dict[str, Any] | None:
    return None if record is None else record.to_json()


def build_result(task: Task, trace: Trace, config: dict[str, Any], wall_time: float) -> dict[str, Any]:
    """The content of ``result.json``.

    Args:
        task: The task that was tuned.
        trace: The run's history.
        config: The run's options (task, method, seed, budget, ...).
        wall_time: Seconds charged to the budget by the whole run.

    Returns:
        A JSON-able dict: ``config``, ``n_hparams``, ``wall_time``, ``best`` (the record with the
        lowest validation loss, with the summary of its hyperparameters under ``hparams`` and, for
        tasks that have them, its ``task_metrics``), ``final`` (the last record), ``history`` and
        ``events``.
    """
    best = _metrics(trace.best)
    if best is not None and trace.best_hparams is not None:
        best["hparams"] = task.summarize_hparams(trace.best_hparams)
    return {
        **config,
        "n_hparams": task.n_hparams,
        "wall_time": wall_time,
        "best": best,
        "final": _metrics(trace.records[-1] if trace.records else None),
        "history": [record.to_json() for record in trace.records],
        "events": trace.events,
    }


def write_result(out: Path, result: dict[str, Any], best_hparams: dict[str, torch.Tensor] | None) -> None:
    """Write ``result.json`` (and ``best_hparams.pt`` when there are hyperparameters) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if best_hparams is not None:
        atomic_write(out / HPARAMS_FILE, lambda handle: torch.save(best_hparams, handle))
    text = json.dumps(result, indent=1, allow_nan=True).encode()
    atomic_write(out / RESULT_FILE, lambda handle: handle.write(text))
