"""Atomic writes: a result or checkpoint is either the old file or the whole new one, never half-written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Writes ``path`` through a temporary file in the same folder and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))
