"""The search spaces a search can run in (``--space``), and what the search loop needs of each.

The loop sees a space only through :class:`SearchSpace`: a supernet whose ``split_parameters()``
returns ``(weights, alphas)`` dicts (one α tensor for NAS-Bench-201, ``alpha_normal`` and
``alpha_reduce`` for DARTS; the core library takes hyperparameter dicts of any size), the derivation of
the discrete architecture from those α, and the parser of its printed form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from applications.nas.spaces.darts import genotype as darts_genotype
from applications.nas.spaces.darts.genotype import Genotype, derive_genotype
from applications.nas.spaces.darts.supernet import DartsSupernet
from applications.nas.spaces.nb201 import genotype
from applications.nas.spaces.nb201.derive import derive_cell, edge_probabilities, format_alpha_table
from applications.nas.spaces.nb201.genotype import Cell
from applications.nas.spaces.nb201.network import ALPHA_NAME, Supernet


class SupernetSettings(Protocol):
    """The settings a space builds its supernet from; a search's
    :class:`~applications.nas.searching.config.SearchConfig` has them (the spaces do not import it)."""

    @property
    def channels(self) -> int: ...

    @property
    def cells_per_stage(self) -> int: ...

    @property
    def layers(self) -> int: ...

    @property
    def track_bn_stats(self) -> bool: ...


class Architecture(Protocol):
    """A derived architecture: printable in its space's official form, parseable back by the space."""

    def is_connected(self) -> bool: ...


@dataclass(frozen=True)
class SearchSpace:
    """What a search needs to know about one search space.

    Attributes:
        name: the ``--space`` value.
        title: a human name for messages.
        operations, edges: column and row labels of each α tensor.
        build_supernet: ``(settings, in_channels, num_classes)`` -> the search network, whose
            ``split_parameters()`` gives ``(weights, alphas)``.
        derive: ``(alphas, exclude_none)`` -> the discrete architecture.
        derivation: ``exclude_none`` -> a one-line description of how :attr:`derive` chooses.
        parse: the printed architecture -> the architecture.
    """

    name: str
    title: str
    operations: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    build_supernet: Callable[[SupernetSettings, int, int], Supernet | DartsSupernet]
    derive: Callable[[Mapping[str, torch.Tensor], bool], Architecture]
    derivation: Callable[[bool], str]
    parse: Callable[[str], Architecture]


NB201 = SearchSpace(
    name="nb201",
    title="NAS-Bench-201 cell",
    operations=genotype.OPERATIONS,
    edges=genotype.EDGES,
    build_supernet=lambda config, in_channels, num_classes: Supernet(
        config.channels, config.cells_per_stage, in_channels, num_classes, config.track_bn_stats),
    derive=lambda alphas, exclude_none: derive_cell(alphas[ALPHA_NAME], exclude_none),
    derivation=lambda exclude_none: "argmax without none" if exclude_none else "argmax",
    parse=Cell.parse,
)

DARTS = SearchSpace(
    name="darts",
    title="DARTS normal and reduction cells",
    operations=darts_genotype.OPERATIONS,
    edges=darts_genotype.EDGES,
    build_supernet=lambda config, in_channels, num_classes: DartsSupernet(
        config.channels, config.layers, in_channels, num_classes, config.track_bn_stats),
    derive=lambda alphas, exclude_none: derive_genotype(alphas["alpha_normal"], alphas["alpha_reduce"]),
    # DARTS never keeps `none`, so there is no variant with it.
    derivation=lambda exclude_none: "top-2 inputs per node without none (DARTS)",
    parse=Genotype.parse,
)

SPACES: dict[str, SearchSpace] = {space.name: space for space in (NB201, DARTS)}


def alpha_probabilities(alphas: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """softmax(α) per edge of every α tensor."""
    return {name: edge_probabilities(alpha) for name, alpha in alphas.items()}


def decisive_edges(alphas: Mapping[str, torch.Tensor]) -> int:
    """How many edges (over all α tensors) have a best operation with probability >= 0.5."""
    return sum(int((p.max(dim=1).values >= 0.5).sum()) for p in alpha_probabilities(alphas).values())


def num_edges(alphas: Mapping[str, torch.Tensor]) -> int:
    """The number of edges over all α tensors."""
    return sum(alpha.shape[0] for alpha in alphas.values())


def alpha_to_json(tensors: Mapping[str, torch.Tensor]) -> Any:
    """α (or its softmax) for ``result.json`` and the log.

    A single tensor is written as its nested list, the format NAS-Bench-201 results have always had;
    several as a dict by name (``{"alpha_normal": ..., "alpha_reduce": ...}``).
    """
    if len(tensors) == 1:
        return next(iter(tensors.values())).tolist()
    return {name: tensor.tolist() for name, tensor in tensors.items()}


def format_alpha_tables(space: SearchSpace, alphas: Mapping[str, torch.Tensor]) -> str:
    """softmax(α) as text, one table per α tensor, titled by its name when there are several."""
    tables = []
    for name, alpha in alphas.items():
        table = format_alpha_table(alpha, space.operations, space.edges)
        tables.append(table if len(alphas) == 1 else f"{name}:\n{table}")
    return "\n\n".join(tables)
