"""Looking up a derived cell's accuracies in NAS-Bench-201.

Two sources: a CSV table in the format of the project's compact table (``index, arch, cifar10_valid,
cifar10_test, cifar100_test, imagenet16_120_test``, accuracies in %), or the official NATS-Bench API
(``nats_bench`` package and its benchmark file), used only when both are present.
"""

from __future__ import annotations

import bisect
import csv
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

DEFAULT_TABLE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nb201" / "nb201_accuracy.csv"
"""The compact table shipped beside the repository (``../shared/data/nb201/nb201_accuracy.csv``)."""

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
        >>> table = BenchmarkTable.from_csv(DEFAULT_TABLE)  # doctest: +SKIP
        >>> table.by_index(6111).cifar10_test  # doctest: +SKIP
        94.37
    """

    def __init__(self, entries: list[BenchmarkEntry], source: str) -> None:
        self.source = source
        self._by_arch = {entry.arch: entry for entry in entries}
        self._by_index = {entry.index: entry for entry in entries}
        self._sorted = {column: sorted(getattr(entry, column) for entry in entries) for column in ACCURACY_COLUMNS}

    @classmethod
    def from_csv(cls, path: str | Path) -> BenchmarkTable:
        """Reads a table; raises :class:`TableError` naming the file and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise TableError(f"benchmark table {path} not found (expected a CSV with columns index, arch, "
                             f"{', '.join(ACCURACY_COLUMNS)})")
        entries = []
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"index", "arch", *ACCURACY_COLUMNS} - set(reader.fieldnames or ())
            if missing:
                raise TableError(f"benchmark table {path} lacks column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                try:
                    arch = str(Cell.parse(row["arch"]))
                    entries.append(BenchmarkEntry(int(row["index"]), arch,
                                                  *(float(row[c]) for c in ACCURACY_COLUMNS)))
                except (ValueError, ArchStringError) as err:
                    raise TableError(f"benchmark table {path}, line {line}: {err}") from None
        if not entries:
            raise TableError(f"benchmark table {path} has no rows")
        return cls(entries, str(path))

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
