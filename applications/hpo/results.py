"""What a run leaves on disk: ``result.json`` and ``best_hparams.pt``, written as one pair.

Each file goes to a temporary name in the destination folder first. Then the old ``result.json`` is
removed, ``best_hparams.pt`` renamed into place, and the new ``result.json`` renamed last: the rename of
``result.json`` commits the pair. ``result.json`` names the hyperparameter file with its SHA-256
(``files``), so whatever moment a run is killed at, a ``result.json`` on disk never sits beside a
``best_hparams.pt`` other than the one it names (:func:`load_best_hparams` checks the hash), and a reader
never sees half a file.

``best_hparams.pt`` is a checkpoint of :mod:`applications.checkpoints`: tensors and plain values, read
with ``torch.load(weights_only=True)``, so a file handed over by someone else runs no code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from applications import checkpoints

from .history import Record, Trace
from .task import Task

RESULT_FILE = "result.json"
HPARAMS_FILE = "best_hparams.pt"
HPARAMS_KIND = "hpo-best-hparams"
HPARAMS_VERSION = 1


def _temporary(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """A temporary file beside ``path`` holding what ``write(handle)`` wrote, flushed to disk."""
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
    except BaseException:
        os.unlink(handle.name)
        raise
    return Path(handle.name)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file, then rename it into place."""
    tmp = _temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink()
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_result(out: Path, result: dict[str, Any], best_hparams: dict[str, torch.Tensor] | None) -> None:
    """Write ``result.json`` and ``best_hparams.pt`` (when there are hyperparameters) into ``out`` as one pair.

    ``result`` gains ``files``: the hyperparameter file's name and SHA-256 (empty without hyperparameters).
    See the module's docstring for the order of the renames that makes the pair consistent at every moment.
    """
    out.mkdir(parents=True, exist_ok=True)
    pending: list[Path] = []
    try:
        files: dict[str, dict[str, str]] = {}
        if best_hparams is not None:
            content = checkpoints.pack(HPARAMS_KIND, HPARAMS_VERSION, {"hparams": dict(best_hparams)})
            pending.append(_temporary(out / HPARAMS_FILE, lambda handle: torch.save(content, handle)))
            files[HPARAMS_FILE] = {"sha256": _sha256(pending[-1])}
        result["files"] = files
        text = json.dumps(result, indent=1, allow_nan=True).encode()
        pending.append(_temporary(out / RESULT_FILE, lambda handle: handle.write(text)))
        # From here until the last rename, out holds no result.json: no old result beside a new best_hparams.pt.
        (out / RESULT_FILE).unlink(missing_ok=True)
        if best_hparams is not None:
            os.replace(pending[0], out / HPARAMS_FILE)
            pending.pop(0)
        else:
            (out / HPARAMS_FILE).unlink(missing_ok=True)  # an older run's hyperparameters are not this run's
        os.replace(pending[0], out / RESULT_FILE)
        pending.pop(0)
    finally:
        for tmp in pending:
            tmp.unlink(missing_ok=True)


def load_best_hparams(path: Path) -> dict[str, torch.Tensor]:
    """The hyperparameters of ``best_hparams.pt`` (or of a run folder holding it), loaded without running code.

    A ``result.json`` beside the file must name it with the same SHA-256 (a pair written by
    :func:`write_result`). Files of earlier versions, a plain dict of tensors, still load.

    Raises:
        CheckpointError: one line naming the file: missing, not a checkpoint (or referring to code), of
            another kind or version, not a dict of finite tensors, or not the file its result.json names.
    """
    path = Path(path)
    path = path / HPARAMS_FILE if path.is_dir() and not (path / HPARAMS_FILE).is_dir() else path
    expected = f"the {HPARAMS_FILE} of an applications.hpo.run run"
    content = checkpoints.read(path, expected)
    if "format" in content:
        content = checkpoints.load(path, HPARAMS_KIND, HPARAMS_VERSION, expected)
        checkpoints.require(content, {"hparams": dict}, path)
        hparams = content["hparams"]
    else:
        hparams = content  # written by an earlier version: the dict of tensors itself
    if not hparams or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in hparams.items()):
        raise checkpoints.CheckpointError(f"{path} does not hold a dict of named tensors; expected {expected}")
    checkpoints.require_finite(hparams, path, "hparams")
    result = path.parent / RESULT_FILE
    if result.is_file():
        try:
            named = json.loads(result.read_bytes()).get("files", {}).get(HPARAMS_FILE, {}).get("sha256")
        except (ValueError, AttributeError, OSError):
            named = None  # a result.json that says nothing usable about the pair is compare's to refuse
        if named is not None and named != _sha256(path):
            raise checkpoints.CheckpointError(f"{path} is not the file {result} names (SHA-256 differs); expected the "
                                              "pair one run wrote")
    return dict(hparams)
