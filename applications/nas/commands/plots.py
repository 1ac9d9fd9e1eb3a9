"""Figures of a search: how each edge's operation probabilities moved, and the derived cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: searches run on headless machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from applications.nas.spaces.nb201.genotype import EDGES, NUM_NODES, OPERATIONS, Cell  # noqa: E402

_COLOURS = dict(zip(OPERATIONS, ("#9e9e9e", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e")))


def plot_alpha_history(history: list[dict[str, Any]], initial_probs: list[list[float]], path: str | Path,
                       title: str = "") -> Path:
    """One panel per edge: softmax(α) of each operation at the start (epoch 0) and after every epoch."""
    history = [{"epoch": 0, "alpha_softmax": initial_probs}, *history]
    epochs = [record["epoch"] for record in history]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, sharey=True)
    for edge, ((to_node, from_node), ax) in enumerate(zip(EDGES, axes.flat)):
        for k, op in enumerate(OPERATIONS):
            values = [record["alpha_softmax"][edge][k] for record in history]
            ax.plot(epochs, values, marker="o" if len(epochs) < 15 else None, ms=3, color=_COLOURS[op], label=op)
        ax.axhline(1 / len(OPERATIONS), color="black", lw=0.5, ls=":")
        ax.set_title(f"edge {from_node} → {to_node}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("softmax(α)")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "operation probabilities per edge (dotted: uniform)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def draw_cell(cell: Cell, path: str | Path, title: str = "") -> Path:
    """The cell as a graph: nodes 0 (input) to 3 (output), each non-``none`` edge labelled by its operation."""
    positions = {0: (0.0, 0.0), 1: (1.2, 1.2), 2: (1.8, -1.2), 3: (3.0, 0.0)}
    # Edges that skip a node curve away from it: 0->2 and 1->3 bend outwards, 0->3 arcs over the middle.
    bends = {(2, 0): 0.35, (3, 1): -0.35, (3, 0): -0.3}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (to_node, from_node), op in zip(EDGES, cell.ops):
        if op == "none":
            continue
        (x0, y0), (x1, y1) = positions[from_node], positions[to_node]
        bend = bends.get((to_node, from_node), 0.0)
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                     mutation_scale=18, color=_COLOURS[op], lw=2, shrinkA=18, shrinkB=18))
        # Midpoint of matplotlib's arc3 curve: the chord's midpoint moved half-way to the control point.
        mx, my = (x0 + x1) / 2 + bend * (y1 - y0) / 2, (y0 + y1) / 2 - bend * (x1 - x0) / 2
        ax.text(mx, my, op, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": _COLOURS[op]})
    for node in range(NUM_NODES):
        x, y = positions[node]
        label = {0: "in", NUM_NODES - 1: "out"}.get(node, str(node))
        ax.add_patch(plt.Circle((x, y), 0.17, color="#f0f0f0", ec="black", zorder=3))
        ax.text(x, y, label, ha="center", va="center", zorder=4, fontsize=10)
    status = "" if cell.is_connected() else "  [DISCONNECTED: input never reaches output]"
    ax.set_title((title or "derived cell") + status, fontsize=10)
    ax.text(1.5, -1.75, str(cell), ha="center", fontsize=7, family="monospace")
    ax.set_xlim(-0.5, 3.5)
    ax.set_ylim(-2.0, 1.6)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_collapse(runs: dict[str, list[tuple[int, list[dict[str, Any]]]]], path: str | Path) -> Path:
    """The skip-connection collapse indicators of several searches, one panel per method.

    For each search (one colour per seed): the mean softmax weight of ``skip_connect`` over the six edges
    after every epoch (solid) and the share of the cell derived at that epoch that is ``skip_connect``
    (dashed). A collapsing DARTS search shows both rising towards 1.

    Args:
        runs: method -> ``[(seed, per-epoch log records), ...]`` (records as in ``log.jsonl``).
        path: the PNG to write.
    """
    skip = OPERATIONS.index("skip_connect")
    methods = sorted(runs)
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        for i, (seed, history) in enumerate(sorted(runs[method], key=lambda run: run[0])):
            colour = f"C{i}"
            epochs = [r["epoch"] for r in history]
            weight = [sum(row[skip] for row in r["alpha_softmax"]) / len(r["alpha_softmax"]) for r in history]
            share = [Cell.parse(r["arch"]).ops.count("skip_connect") / len(EDGES) for r in history]
            ax.plot(epochs, weight, color=colour, label=f"seed {seed}: mean softmax")
            ax.plot(epochs, share, color=colour, ls="--", label=f"seed {seed}: share of cell")
        ax.axhline(1 / len(OPERATIONS), color="black", lw=0.5, ls=":")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    axes[0, 0].set_ylabel("skip_connect")
    fig.suptitle("collapse indicators: skip_connect's mean softmax weight (solid) and its share of the derived cell (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
