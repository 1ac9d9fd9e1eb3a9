"""Looking up a derived cell's accuracies in NAS-Bench-201.

Two sources: a CSV table in the format of the project's compact table (``index, arch, cifar10_valid,
cifar10_test, cifar100_test, imagenet16_120_test``, accuracies in %), plain or gzipped, or the official
NATS-Bench API (``nats_bench`` package and its benchmark file), used only when both are present.

The compact table of all 15,625 cells ships inside the package (``data/nb201_accuracy.csv.gz``, read
through :mod:`importlib.resources`, so it is found from a source checkout, an installed wheel or a zip
alike) and is the default of every command; ``data/README.md`` says where its figures come from.
"""

from __future__ import annotations

import bisect
import csv
import functools
import gzip
import importlib.util
import io
import zlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_TABLE: Traversable = resources.files("applications.nas.benchmark") / "data" / "nb201_accuracy.csv.gz"
"""The compact table shipped with the package (15,625 cells, gzipped CSV)."""

_GZIP_MAGIC = b"\x1f\x8b"

ACCURACY_COLUMNS = ("cifar10_valid", "cifar10_test", "cifar100_test", "imagenet16_120_test")
TEST_COLUMNS = ("cifar10_test", "cifar100_test", "imagenet16_120_test")


class TableError(ValueError):
    """A benchmark table that is missing or not in the expected format."""


@dataclass(frozen=True)
class BenchmarkEntry:
    """One cell's published NAS-Bench-201 accuracies (%)."""

    index: int
    arch: str
    cifar10_valid: float
    cifar10_test: float
    cifar100_test: float
    imagenet16_120_test: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


class BenchmarkTable:
    """A NAS-Bench-201 accuracy table read from CSV, indexed by architecture string.

    Example:
        >>> table = shipped_table()
        >>> table.by_index(6111).cifar10_test
        94.3733
    """

    def __init__(self, entries: list[BenchmarkEntry], source: str) -> None:
        self.source = source
        self._by_arch = {entry.arch: entry for entry in entries}
        self._by_index = {entry.index: entry for entry in entries}
        self._sorted = {column: sorted(getattr(entry, column) for entry in entries) for column in ACCURACY_COLUMNS}

    @classmethod
    def from_csv(cls, path: str | Path | Traversable) -> BenchmarkTable:
        """Reads a table, plain or gzipped (told apart by the gzip magic bytes, not the name).

        Raises:
            TableError: the file is missing, unreadable or not in the expected format (one line naming the
                file and what is wrong with it).
        """
        source = Path(path) if isinstance(path, str) else path
        expected = f"a CSV with columns index, arch, {', '.join(ACCURACY_COLUMNS)}, plain or gzipped"
        if not source.is_file():
            found = "is not a file" if isinstance(source, Path) and source.exists() else "not found"
            raise TableError(f"benchmark table {source} {found} (expected {expected})")
        try:
            data = source.read_bytes()
            if data[:2] == _GZIP_MAGIC:
                data = gzip.decompress(data)
            text = data.decode("utf-8")
        except (gzip.BadGzipFile, EOFError, zlib.error):
            raise TableError(f"benchmark table {source} is a truncated or corrupt gzip file (expected {expected})") from None
        except OSError as err:
            raise TableError(f"benchmark table {source} cannot be read ({type(err).__name__}: {err}; expected {expected})"
                             ) from None
        except UnicodeDecodeError:
            raise TableError(f"benchmark table {source} is not UTF-8 text (expected {expected})") from None
        entries = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"index", "arch", *ACCURACY_COLUMNS} - set(reader.fieldnames or ())
        if missing:
            raise TableError(f"benchmark table {source} lacks column(s) {', '.join(sorted(missing))} (expected {expected})")
        for line, row in enumerate(reader, start=2):
            try:
                arch = str(Cell.parse(row["arch"]))
                accuracies = [float(row[c]) for c in ACCURACY_COLUMNS]
                if not all(0.0 <= a <= 100.0 for a in accuracies):  # also refuses nan and inf
                    raise ValueError(f"accuracies {accuracies} are not all in 0..100 (%)")
                entries.append(BenchmarkEntry(int(row["index"]), arch, *accuracies))
            except (ValueError, TypeError, ArchStringError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise TableError(f"benchmark table {source}, line {line}: {first} (expected {expected})") from None
        if not entries:
            raise TableError(f"benchmark table {source} has no rows (expected {expected})")
        return cls(entries, str(source))

    def __len__(self) -> int:
        return len(self._by_arch)

    def lookup(self, cell: Cell) -> BenchmarkEntry | None:
        """The entry of ``cell``, or ``None`` if the table does not hold it."""
        return self._by_arch.get(str(cell))

    def by_index(self, index: int) -> BenchmarkEntry | None:
        """The entry with official index ``index``, or ``None``."""
        return self._by_index.get(index)

    def accuracies(self, column: str = "cifar10_test") -> list[float]:
        """Every cell's accuracy in ``column``, ascending."""
        if column not in self._sorted:
            raise ValueError(f"column {column!r} is not one of {', '.join(ACCURACY_COLUMNS)}")
        return list(self._sorted[column])

    def percentile(self, accuracy: float, column: str = "cifar10_test") -> float:
        """Where ``accuracy`` ranks among all cells of the table, in percent (mid-rank for ties).

        100 * (cells scoring below + half of the cells scoring the same) / cells: the best cell of
        NAS-Bench-201 ranks near 100, the median cell at 50, and a random pick at 50 on average.
        """
        values = self._sorted[column]
        below = bisect.bisect_left(values, accuracy)
        ties = bisect.bisect_right(values, accuracy) - below
        return 100.0 * (below + 0.5 * ties) / len(values)


@functools.cache
def shipped_table() -> BenchmarkTable:
    """The compact table shipped with the package (:data:`DEFAULT_TABLE`), read once per process."""
    return BenchmarkTable.from_csv(DEFAULT_TABLE)


def expected_best_of(values: list[float], picks: int) -> float:
    """The expected maximum of ``picks`` cells drawn uniformly (with replacement) from ``values``.

    With the values sorted ascending, a_1 <= ... <= a_N, the best of n draws is a_i with probability
    (i/N)^n - ((i-1)/N)^n: the exact expectation, no sampling.
    """
    if picks < 1 or not values:
        raise ValueError(f"picks = {picks} from {len(values)} values; expected picks >= 1 and some values")
    ordered = sorted(values)
    n = len(ordered)
    return sum(a * ((i / n) ** picks - ((i - 1) / n) ** picks) for i, a in enumerate(ordered, start=1))


def describe_cell(cell: Cell, table: BenchmarkTable | None, nats_file: Path | None = None) -> dict[str, Any] | None:
    """The cell's benchmark entry (from the official API when ``nats_file`` serves it, else from ``table``)
    with its source and, given a table, its percentile among all the table's cells on each test set;
    ``None`` when neither source holds the cell."""
    entry = lookup_official(cell, nats_file) if nats_file is not None else None
    source = f"NATS-Bench API ({nats_file})" if entry is not None else None
    if entry is None and table is not None:
        entry, source = table.lookup(cell), table.source
    if entry is None:
        return None
    found: dict[str, Any] = {**entry.to_dict(), "source": source}
    if table is not None:
        found["percentile"] = {column: table.percentile(getattr(entry, column), column) for column in TEST_COLUMNS}
        found["cells_in_table"] = len(table)
    return found


def lookup_official(cell: Cell, benchmark_file: str | Path) -> BenchmarkEntry | None:
    """Queries the official NATS-Bench topology API, if the ``nats_bench`` package is installed.

    Returns ``None`` when the package or the file is missing, so callers fall back to a CSV table.
    Test accuracies are the 200-epoch means over seeds; CIFAR-10 validation is ``cifar10-valid``.
    """
    if importlib.util.find_spec("nats_bench") is None or not Path(benchmark_file).exists():
        return None
    from nats_bench import create  # optional dependency, imported only when present

    api = create(str(benchmark_file), "tss", fast_mode=True, verbose=False)
    index = api.query_index_by_arch(str(cell))
    if index < 0:
        return None

    def accuracy(dataset: str, key: str) -> float:
        return float(api.get_more_info(index, dataset, hp="200", is_random=False)[key])

    return BenchmarkEntry(
        index,
        str(cell),
        accuracy("cifar10-valid", "valid-accuracy"),
        accuracy("cifar10", "test-accuracy"),
        accuracy("cifar100", "test-accuracy"),
        accuracy("ImageNet16-120", "test-accuracy"),
    )
