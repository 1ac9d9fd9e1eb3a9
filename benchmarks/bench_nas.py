"""Cost of one search step of each NAS method, on the ``make search`` configuration (CPU, one thread).

A search step is what the search loop repeats: T weight steps, then one architecture step. Reported,
as ratios to ``darts-1st`` measured in the same run:

* seconds per step (median of the rounds), and
* peak memory of one step (torch profiler allocation events, CPU).

``test_idarts_costs_no_more_than_its_parts`` times the parts of an iDARTS step with plain autograd:
T weight-step gradients, the outer gradient (∂_w F, ∂_α F), K Hessian-vector products (each with the
gradient graph built on its own fresh batch) and one mixed product (graph on the first batch plus a
double-backward towards α). The whole step must cost at most their sum + 10%.

Run: ``pytest benchmarks/bench_nas.py --benchmark-only -s`` (writes .benchmarks/nas_step_costs.json).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from applications.nas.data import load_dataset, split_train_val
from applications.nas.search import PRESETS
from applications.nas.search_loop import METHODS, SearchConfig, _Search

pytestmark = pytest.mark.float32
ROUNDS = 8
RESULTS: dict[str, dict[str, float]] = {}
REPORT = Path(".benchmarks") / "nas_step_costs.json"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def split() -> tuple[Any, Any]:
    preset = PRESETS["cpu-demo"]
    data = load_dataset(preset["dataset"], image_size=preset["image_size"])
    return split_train_val(data.train, 0)


def _search(method: str, split: tuple[Any, Any]) -> _Search:
    config = SearchConfig(**{**PRESETS["cpu-demo"], "method": method})
    return _Search(config, *split)


def _search_step(search: _Search) -> Callable[[], None]:
    lr = search.config.w_lr

    def step() -> None:
        batch = search.train_stream()
        for _ in range(search.config.inner_steps):
            search.weight_step(batch)
        search.arch_step(lr, batch)

    return step


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak of live CPU tensor memory allocated during ``fn`` (profiler allocation and free events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("method", METHODS)
def test_search_step_cost(method: str, split: tuple[Any, Any], benchmark: Any) -> None:
    search = _search(method, split)
    step = _search_step(search)
    step()  # warm-up: allocator and autograd caches
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    seconds = statistics.median(benchmark.stats.stats.data)
    peak = peak_memory_bytes(step)
    RESULTS[method] = {"seconds_per_step": seconds, "peak_bytes": float(peak)}
    benchmark.extra_info.update(RESULTS[method])


def _median_seconds(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_idarts_costs_no_more_than_its_parts(split: tuple[Any, Any], benchmark: Any) -> None:
    search = _search("idarts", split)
    config = search.config
    weights = list(search.weights.values())
    alpha = search.alpha

    def weight_step() -> None:
        search.weight_step(search.train_stream())

    def outer_gradient() -> None:
        x, y = search.val_stream()
        torch.autograd.grad(F.cross_entropy(search.net(x), y), [*weights, alpha])

    def _inner_gradient_graph() -> list[torch.Tensor]:
        batch = search.hessian_stream()
        loss = search.inner_loss(search.weights, search.alphas, batch)
        return list(torch.autograd.grad(loss, weights, create_graph=True))

    vector = [torch.randn_like(w) for w in weights]

    def hvp() -> None:
        grads = _inner_gradient_graph()
        torch.autograd.grad(grads, weights, grad_outputs=vector)

    def mixed_product() -> None:
        grads = _inner_gradient_graph()
        torch.autograd.grad(grads, [alpha], grad_outputs=vector)

    parts = {
        "weight_steps": config.inner_steps * _median_seconds(weight_step),
        "outer_gradient": _median_seconds(outer_gradient),
        "hvps": config.neumann_terms * _median_seconds(hvp),
        "mixed_product": _median_seconds(mixed_product),
    }
    step = _search_step(search)
    step()
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    whole = statistics.median(benchmark.stats.stats.data)
    budget = sum(parts.values())
    benchmark.extra_info.update({**parts, "sum_of_parts": budget, "idarts_step": whole, "ratio": whole / budget})
    RESULTS["idarts_parts"] = {**parts, "sum_of_parts": budget, "idarts_step": whole, "ratio_to_parts": whole / budget}
    print(f"\niDARTS step {whole:.3f} s vs sum of parts {budget:.3f} s (ratio {whole / budget:.2f}): "
          + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    assert whole <= 1.10 * budget


def test_report_ratios_to_darts_first_order() -> None:
    if not all(m in RESULTS for m in METHODS):
        pytest.skip("run the whole file to compare methods")
    base = RESULTS["darts-1st"]
    table = {m: {"seconds_per_step": RESULTS[m]["seconds_per_step"],
                 "time_ratio": RESULTS[m]["seconds_per_step"] / base["seconds_per_step"],
                 "peak_mib": RESULTS[m]["peak_bytes"] / 2**20,
                 "memory_ratio": RESULTS[m]["peak_bytes"] / base["peak_bytes"]} for m in METHODS}
    print("\nmethod        s/step  x darts-1st   peak MiB  x darts-1st")
    for m, row in table.items():
        print(f"{m:12s} {row['seconds_per_step']:7.3f} {row['time_ratio']:11.2f} {row['peak_mib']:10.1f} "
              f"{row['memory_ratio']:11.2f}")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"methods": table, "idarts_parts": RESULTS.get("idarts_parts")}, indent=2) + "\n")
    assert table["darts-1st"]["time_ratio"] == 1.0
    # Every second-order method does at least one more gradient than first order.
    assert all(table[m]["time_ratio"] > 1.0 for m in METHODS if m != "darts-1st")
