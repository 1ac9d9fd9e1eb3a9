"""The NAS-Bench-201 cell as plain data: operations, edges and the official architecture string.

A cell has four nodes; node 0 is the cell input, node 3 its output, and every node ``j`` sums one
operation applied to each earlier node ``i < j``. That gives six edges, listed here in the order of the
official string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1's inputs, then node 2's, then node 3's).
The same order indexes the rows of the architecture weights α.
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATIONS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The five candidate operations, in the column order of α."""
PARAMETER_FREE: tuple[str, ...] = ("none", "skip_connect", "avg_pool_3x3")
"""The operations without weights; a cell made of them is the collapse of differentiable NAS."""

NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))
"""``(to_node, from_node)`` for each edge, in the order of the architecture string and of α's rows."""


class ArchStringError(ValueError):
    """An architecture string that is not in the official NAS-Bench-201 format."""


@dataclass(frozen=True)
class Cell:
    """A discrete NAS-Bench-201 cell: one operation name per edge, in :data:`EDGES` order.

    Example:
        >>> cell = Cell.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
        ...                   "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
        >>> cell.ops[0], cell.is_connected()
        ('nor_conv_3x3', True)
    """

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ArchStringError(f"a cell has {len(EDGES)} edges, got {len(self.ops)} operations")
        for op in self.ops:
            if op not in OPERATIONS:
                raise ArchStringError(f"unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}")

    @classmethod
    def parse(cls, text: str) -> Cell:
        """Parses the official string, e.g. ``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``.

        Raises:
            ArchStringError: naming what is wrong with ``text``.
        """
        nodes = text.strip().split("+")
        if len(nodes) != NUM_NODES - 1:
            raise ArchStringError(
                f"architecture {text!r} has {len(nodes)} node groups separated by '+', expected {NUM_NODES - 1} "
                "(format |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
            )
        ops: list[str] = []
        for node, group in enumerate(nodes, start=1):
            if not (group.startswith("|") and group.endswith("|")):
                raise ArchStringError(f"node group {group!r} in {text!r} must start and end with '|'")
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise ArchStringError(f"node {node} in {text!r} needs {node} inputs, got {len(entries)}")
            for source, entry in enumerate(entries):
                op, sep, index = entry.partition("~")
                if not sep or index != str(source):
                    raise ArchStringError(f"entry {entry!r} in {text!r} must read '<op>~{source}'")
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        groups = []
        for node in range(1, NUM_NODES):
            entries = [f"{self.op(node, source)}~{source}" for source in range(node)]
            groups.append("|" + "|".join(entries) + "|")
        return "+".join(groups)

    def op(self, to_node: int, from_node: int) -> str:
        """The operation on the edge ``from_node -> to_node``."""
        return self.ops[EDGES.index((to_node, from_node))]

    def is_connected(self) -> bool:
        """Whether any path of non-``none`` edges leads from the cell input to its output.

        A disconnected cell outputs zeros whatever its input; NAS-Bench-201 scores such cells at
        chance level (10% on CIFAR-10).
        """
        reached = {0}
        for to_node, from_node in EDGES:  # edges are sorted by target node, so one pass suffices
            if from_node in reached and self.op(to_node, from_node) != "none":
                reached.add(to_node)
        return NUM_NODES - 1 in reached
