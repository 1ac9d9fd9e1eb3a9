"""Reading a search's ``result.json`` (``train --result``, ``report``): one checked reader, one-line errors."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from applications.nas.spaces.darts.genotype import Genotype, GenotypeError
from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

EXPECTED = "expected the result.json a search wrote (python -m applications.nas.search)"

#: What ``report`` reads of every result, with the types it needs (numbers finite).
REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "arch": str, "method": str, "seed": int, "connected": bool, "seconds_per_step": (int, float),
}


class ResultFileError(ValueError):
    """A file that is not a search's result.json; the message is one line naming it."""


def parse_cell(text: str) -> Cell | Genotype:
    """A NAS-Bench-201 cell string or a DARTS genotype string, whichever ``text`` is."""
    return Genotype.parse(text) if text.lstrip().startswith("Genotype(") else Cell.parse(text)


def read_search_result(path: Path, fields: Mapping[str, type | tuple[type, ...]] = REPORT_FIELDS) -> dict[str, Any]:
    """The JSON object of ``path``, with each of ``fields`` present, of its type, numbers finite, and ``arch``
    (when asked for) a cell or genotype string.

    Raises:
        ResultFileError: one line naming ``path``: missing, a folder, not UTF-8 JSON, or a field missing or wrong.
    """
    if not path.exists():
        raise ResultFileError(f"{path} not found; {EXPECTED}")
    if not path.is_file():
        raise ResultFileError(f"{path} is not a file; {EXPECTED}")
    try:
        result = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON (truncated or empty)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResultFileError(f"{path} is not readable JSON ({reason}); {EXPECTED}") from None
    if not isinstance(result, dict):
        raise ResultFileError(f"{path} holds a JSON {type(result).__name__}; {EXPECTED} (a JSON object)")
    for name, kind in fields.items():
        if name not in result:
            raise ResultFileError(f"{path} has no {name!r}; {EXPECTED}")
        value = result[name]
        numeric = kind in (int, (int, float))
        if not isinstance(value, kind) or (numeric and isinstance(value, bool)):
            raise ResultFileError(f"{path}: {name!r} is {value!r:.40}; {EXPECTED} (with {name} a "
                                  f"{'number' if numeric else kind.__name__ if isinstance(kind, type) else kind})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ResultFileError(f"{path}: {name!r} is {value}; {EXPECTED} (with {name} finite)")
    if "arch" in fields:
        try:
            parse_cell(result["arch"])
        except (ArchStringError, GenotypeError) as err:
            raise ResultFileError(f"{path}: 'arch' is not a cell or genotype ({str(err).strip().splitlines()[0]}); "
                                  f"{EXPECTED}") from None
    return result
