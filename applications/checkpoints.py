"""Checkpoint files that run no code when they are loaded.

A checkpoint (a NAS search's or a retraining's ``checkpoint.pt``, an HPO run's ``best_hparams.pt``) is a
``torch.save`` archive of tensors and plain values only: dicts, lists, tuples, strings, numbers, booleans,
``None``. Random-number-generator states are uint8 tensors (:func:`rng_state`), settings and histories
plain dicts and lists. Every file carries ``format`` (:data:`FORMAT`), ``kind`` (what wrote it) and
``version`` (of that kind's layout).

:func:`load` reads a file with ``torch.load(weights_only=True)``, whose unpickler builds tensors and
plain containers and refuses every other global, so a crafted file cannot run code. Before loading, the
archive's references to globals are listed (without unpickling anything): a file that refers to anything
outside the safe set is refused in one line, naming what it refers to, and a file of an older version of
this project (which pickled numpy arrays and RNG tuples) gets a one-line answer saying so. Every failure
is a :class:`CheckpointError` (a ``ValueError``) whose message is one line naming the file and what was
expected.
"""

from __future__ import annotations

import math
import random
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "hypergrad checkpoint"
"""The value of every checkpoint's ``format`` entry."""

#: The globals that the checkpoints of earlier versions of this project pickled (numpy RNG states).
_OLD_VERSION_GLOBALS = frozenset({"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                                  "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray.scalar",
                                  "numpy._core.multiarray.scalar"})
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file that is not a checkpoint of the expected kind and version; the message is one line naming it."""


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise ``TypeError`` unless ``value`` holds only tensors and plain values (what :func:`load` accepts).

    Called before every save, so that a checkpoint the safe loader would refuse is never written.
    """
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; expected str or int")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; a checkpoint holds tensors and plain values only")


def pack(kind: str, version: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with the format fields, checked to hold only what :func:`load` accepts; ``torch.save`` it.

    Args:
        kind: what the checkpoint is (``"nas-search"``, ``"nas-train"``, ``"hpo-best-hparams"``).
        version: the layout version of that kind.
        payload: tensors and plain values (:func:`check_plain`).
    """
    content = {"format": FORMAT, "kind": kind, "version": version, **payload}
    check_plain(content)
    return content


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def read(path: Path, expected: str) -> dict[str, Any]:
    """The dict saved at ``path``, loaded with ``torch.load(weights_only=True)``: no code from it runs.

    Args:
        path: the file.
        expected: what the caller expected there, for the messages (e.g. "the checkpoint.pt of a search").

    Raises:
        CheckpointError: one line naming ``path``: missing, a folder, not a torch archive, referring to code,
            written by an older version, truncated, or not a dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} not found; expected {expected}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; expected {expected}")
    try:
        is_archive = zipfile.is_zipfile(path)
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read ({_first_line(err)}); expected {expected}") from None
    if not is_archive:
        raise CheckpointError(f"{path} is not a torch.save archive (empty, truncated or another format); "
                              f"expected {expected}")
    try:
        # Lists the globals the pickle would import, by reading its opcodes: nothing is unpickled here.
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:  # a damaged archive raises several unrelated types
        raise CheckpointError(f"{path} cannot be read ({_first_line(err)}); expected {expected}") from None
    if unsafe and set(unsafe) <= _OLD_VERSION_GLOBALS:
        raise CheckpointError(f"{path} was written by an older version of hypergrad; it is not loaded, because it "
                              "holds pickled numpy objects and unpickling them could run code: start that run again")
    if unsafe:
        raise CheckpointError(f"{path} is not {expected}: it refers to {', '.join(sorted(unsafe)[:3])}, which is "
                              "never loaded (unpickling it could run code)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about unusual pickle protocols over several lines
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read ({_first_line(err)}); expected {expected}") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a {type(content).__name__}; expected {expected}")
    return content


def load(path: Path, kind: str, version: int, expected: str) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded by :func:`read` and checked to be ``kind`` at ``version``.

    Raises:
        CheckpointError: as :func:`read`, or a file of another kind or version (one line naming ``path``).
    """
    content = read(path, expected)
    if content.get("format") != FORMAT or content.get("kind") != kind:
        raise CheckpointError(f"{path} is not {expected} (format {content.get('format')!r}, kind "
                              f"{content.get('kind')!r}; expected {FORMAT!r}, {kind!r})")
    if content.get("version") != version:
        raise CheckpointError(f"{path} has layout version {content.get('version')!r} of {kind}; this version of "
                              f"hypergrad reads version {version}")
    return content


# --- checking what was loaded ---------------------------------------------------------------------

_KINDS: dict[type | tuple[type, ...], str] = {
    dict: "a dict", list: "a list", str: "a string", torch.Tensor: "a tensor", bool: "true or false",
}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind in _KINDS:
        return _KINDS[kind]
    if kind == (int,):
        return "an integer"
    if kind == (int, float):
        return "a number"
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def require(content: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]], path: Path,
            where: str = "") -> None:
    """Raise a one-line :class:`CheckpointError` unless each of ``fields`` is present with its type.

    Numbers are ``(int, float)`` or ``(int,)``; booleans never count as numbers; a float must be finite.
    """
    for name, kind in fields.items():
        label = f"{where}[{name!r}]" if where else repr(name)
        if not isinstance(content, Mapping) or name not in content:
            raise CheckpointError(f"{path} has no {label}; expected a checkpoint with {', '.join(fields)}")
        value = content[name]
        numeric = kind in ((int,), (int, float))
        wrong = (not isinstance(value, kind)) or (numeric and isinstance(value, bool))
        if not wrong and isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"{path}: {label} is {value}; expected a finite number")
        if wrong:
            raise CheckpointError(f"{path}: {label} is {type(value).__name__} {value!r:.40}; expected {_kind_name(kind)}")


def require_finite(tensors: Mapping[str, Any], path: Path, where: str) -> None:
    """Raise a one-line :class:`CheckpointError` unless every floating tensor in ``tensors`` is finite."""
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: {where}[{name!r}] holds NaN or Inf; expected finite values")


def _bytes_tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values).view(np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """Every global random-number generator's state, as uint8 tensors and plain numbers.

    ``cuda`` holds ``torch.cuda.get_rng_state_all()`` (one state per device) when CUDA is available, else
    an empty list.
    """
    _, key, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"key": _bytes_tensor(np.asarray(key, dtype="<u4")), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": {"version": int(version), "state": _bytes_tensor(np.asarray(words, dtype="<u4")),
                   "gauss_next": gauss_next},
    }


def _uint8(value: Any, path: Path, label: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
        raise CheckpointError(f"{path}: {label} is not a 1-d uint8 tensor; expected a random-number generator state")
    return value


def set_rng_state(state: Mapping[str, Any], path: Path, device: torch.device | str = "cpu") -> None:
    """Restore what :func:`rng_state` saved; the CUDA states only when ``device`` is a CUDA device.

    Every part is checked before any generator is changed, so a bad state changes nothing.

    Raises:
        CheckpointError: a state of the wrong type or size (one line naming ``path``).
    """
    require(state, {"torch": torch.Tensor, "cuda": list, "numpy": dict, "python": dict}, path, "rng")
    cpu = _uint8(state["torch"], path, "rng['torch']")
    cuda = [_uint8(s, path, f"rng['cuda'][{i}]") for i, s in enumerate(state["cuda"])]
    require(state["numpy"], {"key": torch.Tensor, "pos": (int,), "has_gauss": (int,), "gauss": (int, float)},
            path, "rng['numpy']")
    require(state["python"], {"version": (int,), "state": torch.Tensor}, path, "rng['python']")
    key = _uint8(state["numpy"]["key"], path, "rng['numpy']['key']")
    words = _uint8(state["python"]["state"], path, "rng['python']['state']")
    gauss_next = state["python"].get("gauss_next")
    if key.numel() != 624 * 4 or words.numel() != 625 * 4 or not (gauss_next is None or isinstance(gauss_next, float)):
        raise CheckpointError(f"{path}: rng['numpy'] or rng['python'] has the wrong size; expected Mersenne Twister "
                              "states of 624 words (numpy) and 625 (python)")
    numpy_state = ("MT19937", key.numpy().view("<u4").astype(np.uint32), state["numpy"]["pos"],
                   state["numpy"]["has_gauss"], float(state["numpy"]["gauss"]))
    python_state = (state["python"]["version"], tuple(int(w) for w in words.numpy().view("<u4")), gauss_next)
    try:
        torch.set_rng_state(cpu)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: a random-number generator state is not valid ({_first_line(err)})") from None
    if torch.device(device).type == "cuda" and cuda:
        # States of the devices this machine has; a checkpoint written on more devices keeps the others unused.
        for index, device_state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
