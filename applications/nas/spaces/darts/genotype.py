"""The DARTS cell as plain data: operations, edges, the genotype and its derivation from α.

A DARTS cell (Liu et al., "DARTS: Differentiable Architecture Search", ICLR 2019) has two input nodes
(0 and 1: the outputs of the two previous cells) and four intermediate nodes 2..5; node ``j`` sums one
operation on each earlier node, which gives 2 + 3 + 4 + 5 = 14 edges. The cell's output concatenates
the intermediate nodes. :data:`EDGES` lists the edges in DARTS's order, which indexes the rows of
``alpha_normal`` and ``alpha_reduce``.

The derived genotype keeps two inputs per intermediate node and is printed in DARTS's own form::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import torch

OPERATIONS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The eight candidate operations, in the column order of α (DARTS's ``PRIMITIVES``)."""

NUM_INPUTS = 2
NUM_INTERMEDIATE = 4
EDGES: tuple[tuple[int, int], ...] = tuple(
    (to_node, from_node)
    for to_node in range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE)
    for from_node in range(to_node)
)
"""``(to_node, from_node)`` for each of the 14 edges, in the order of α's rows."""

CONCAT: tuple[int, ...] = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE))
"""The nodes whose outputs a cell concatenates: every intermediate node."""

_KEPT_INPUTS = 2  # inputs per intermediate node in a derived cell, as in DARTS

CellGenes = tuple[tuple[str, int], ...]
"""One cell of a genotype: ``(operation, input node)`` pairs, two per intermediate node, in node order."""


class GenotypeError(ValueError):
    """A genotype string or value that is not a valid DARTS genotype."""


def _check_cell(name: str, genes: CellGenes, concat: tuple[int, ...]) -> None:
    if len(genes) != _KEPT_INPUTS * NUM_INTERMEDIATE:
        raise GenotypeError(f"{name} has {len(genes)} (operation, input) pairs, expected "
                            f"{_KEPT_INPUTS * NUM_INTERMEDIATE} (two per intermediate node)")
    for position, (op, source) in enumerate(genes):
        node = NUM_INPUTS + position // _KEPT_INPUTS
        if op not in OPERATIONS[1:]:
            raise GenotypeError(f"{name}: unknown operation {op!r}; expected one of {', '.join(OPERATIONS[1:])}")
        if not 0 <= source < node:
            raise GenotypeError(f"{name}: node {node} takes input {source}, expected an earlier node 0..{node - 1}")
    if not concat or any(node not in CONCAT for node in concat):
        raise GenotypeError(f"{name}_concat {list(concat)} must name intermediate nodes among {list(CONCAT)}")


@dataclass(frozen=True)
class Genotype:
    """A discrete DARTS architecture: the normal cell and the reduction cell.

    Example:
        >>> text = str(Genotype.parse(str(derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8)))))
        >>> text.startswith("Genotype(normal=[('max_pool_3x3', 0), ('max_pool_3x3', 1)")
        True
    """

    normal: CellGenes
    normal_concat: tuple[int, ...]
    reduce: CellGenes
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_cell("normal", self.normal, self.normal_concat)
        _check_cell("reduce", self.reduce, self.reduce_concat)

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Reads the string :meth:`__str__` prints (DARTS's ``Genotype(...)`` repr).

        Only literals are evaluated (``ast.literal_eval``), so a string from a file is safe to parse.

        Raises:
            GenotypeError: naming what is wrong with ``text``.
        """
        try:
            call = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise GenotypeError(f"genotype {text!r} is not of the form Genotype(normal=[...], ...)") from None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"
                and not call.args):
            raise GenotypeError(f"genotype {text!r} is not of the form Genotype(normal=[...], ...)")
        expected = ("normal", "normal_concat", "reduce", "reduce_concat")
        fields = {keyword.arg: keyword.value for keyword in call.keywords}
        if sorted(fields, key=str) != sorted(expected):
            raise GenotypeError(f"genotype {text!r} must name exactly the fields {', '.join(expected)}")
        try:
            values = {name: ast.literal_eval(node) for name, node in fields.items()}
            normal = tuple((str(op), int(source)) for op, source in values["normal"])
            reduce = tuple((str(op), int(source)) for op, source in values["reduce"])
            normal_concat = tuple(int(node) for node in values["normal_concat"])
            reduce_concat = tuple(int(node) for node in values["reduce_concat"])
        except (ValueError, TypeError):
            raise GenotypeError(f"genotype {text!r} must hold lists of (operation, input) pairs and of "
                                "node numbers") from None
        return cls(normal, normal_concat, reduce, reduce_concat)

    def __str__(self) -> str:
        return (f"Genotype(normal={list(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={list(self.reduce)}, reduce_concat={list(self.reduce_concat)})")

    def is_connected(self) -> bool:
        """Always true: every intermediate node has two non-``none`` inputs, so the inputs reach the output."""
        return True


def _derive_cell(alpha: torch.Tensor) -> CellGenes:
    """The two strongest non-``none`` inputs of each intermediate node, by softmax(α) weight."""
    if tuple(alpha.shape) != (len(EDGES), len(OPERATIONS)):
        raise ValueError(f"DARTS alpha must have shape ({len(EDGES)}, {len(OPERATIONS)}), got {tuple(alpha.shape)}")
    # Edges compete across rows, so compare probabilities, not raw α (rows have different normalisers).
    probs = torch.softmax(alpha.detach().float(), dim=-1)[:, 1:]  # column 0 is `none`, never kept
    strength, best_op = probs.max(dim=-1)
    genes: list[tuple[str, int]] = []
    for node in CONCAT:
        rows = [edge for edge, (to_node, _) in enumerate(EDGES) if to_node == node]
        # Stable sort: on a tie the edge from the earlier node wins, so the result is deterministic.
        strongest = sorted(rows, key=lambda edge: -float(strength[edge]))[:_KEPT_INPUTS]
        # Stronger input first, as DARTS lists them.
        genes.extend((OPERATIONS[1 + int(best_op[edge])], EDGES[edge][1]) for edge in strongest)
    return tuple(genes)


def derive_genotype(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> Genotype:
    """The genotype DARTS derives: per intermediate node, the two edges whose strongest non-``none``
    operation weighs most, each with that operation.

    ``none`` is excluded both when ranking edges and when choosing operations, as in DARTS.

    Args:
        alpha_normal: ``(14, 8)`` architecture weights of the normal cells, columns in :data:`OPERATIONS` order.
        alpha_reduce: the same for the reduction cells.
    """
    return Genotype(_derive_cell(alpha_normal), CONCAT, _derive_cell(alpha_reduce), CONCAT)
