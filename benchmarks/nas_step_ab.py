"""Seconds per NAS search step of two versions of the code, side by side in one process.

``python -m benchmarks.nas_step_ab OLD_TREE`` imports ``hypergrad`` and ``applications`` from
``OLD_TREE`` (an exported older commit, e.g. ``git archive <commit> | tar -x -C OLD_TREE``) and from
this checkout in turn, builds the same search with each (the ``cifar-cpu`` supernet, C=8, N=1, on random
16x16 images, batch 64), and times one step (one weight step and one architecture step) of each
version alternately, so that both see the same load. It prints the fastest and the median round of
each and their ratio; the fastest round is the least disturbed on a shared machine.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg")
PACKAGES = ("hypergrad", "applications")


def import_tree(root: Path) -> dict[str, ModuleType]:
    """The search modules of the code under ``root``, imported afresh (earlier imports stay alive in
    the objects that hold them)."""
    for name in [n for n in sys.modules if n.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return {name: importlib.import_module(f"applications.nas.{name}")
                for name in ("searching.loop", "searching.config", "common.data")}
    finally:
        sys.path.remove(str(root))


def build(modules: dict[str, ModuleType], method: str) -> Any:
    """A ``_Search`` of ``method`` at the ``cifar-cpu`` supernet size on random images."""
    gen = torch.Generator().manual_seed(0)
    image_set = modules["common.data"].ImageSet

    def images(n: int = 512) -> Any:
        x = torch.randint(0, 256, (n, 3, 16, 16), generator=gen, dtype=torch.uint8)
        return image_set(x, torch.randint(0, 10, (n,), generator=gen), 10, (0.5,) * 3, (0.25,) * 3)

    config = modules["searching.config"].SearchConfig(method=method, dataset="cifar10", channels=8, cells_per_stage=1,
                                                      batch_size=64)
    return modules["searching.loop"]._Search(config, images(), images())


def step_seconds(search: Any) -> float:
    batch = search.train_stream()
    start = time.perf_counter()
    search.weight_step(batch)
    search.arch_step(search.config.w_lr, batch)
    return time.perf_counter() - start


def main(old_root: Path, rounds: int = 8) -> None:
    torch.set_num_threads(1)
    trees = {"old": import_tree(old_root), "new": import_tree(Path(__file__).resolve().parents[1])}
    print("| method | old s/step (min / median) | new s/step (min / median) | new / old (min) |\n| --- | ---: | ---: | ---: |")
    for method in METHODS:
        searches = {name: build(modules, method) for name, modules in trees.items()}
        times: dict[str, list[float]] = {name: [] for name in trees}
        for search in searches.values():
            step_seconds(search)  # warm-up
        for _ in range(rounds):
            for name, search in searches.items():
                times[name].append(step_seconds(search))
        old, new = times["old"], times["new"]
        print(f"| {method} | {min(old):.3f} / {statistics.median(old):.3f} | {min(new):.3f} / "
              f"{statistics.median(new):.3f} | {min(new) / min(old):.2f} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8)
