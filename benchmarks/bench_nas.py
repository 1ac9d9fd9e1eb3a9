"""Cost of one search step of each NAS method, on the ``make search`` configuration (CPU, one thread).

A search step is what the search loop repeats: T weight steps, then one architecture step. Reported,
as ratios to ``darts-1st`` measured in the same run:

* seconds per step (fastest of the rounds: other jobs share the machine, and the fastest round is the
  least disturbed one), and
* peak memory of one step (torch profiler allocation events, CPU).

``test_idarts_costs_no_more_than_its_parts`` times the parts of an iDARTS step with plain autograd:
T weight-step gradients, the outer gradient (∂_w F, ∂_α F), K Hessian-vector products (each with the
gradient graph built on its own fresh batch) and one mixed product (graph on the first batch plus a
double-backward towards α). The whole step must cost at most their sum + 10%.

Run: ``make bench`` or ``pytest benchmarks --benchmark-only``. The ratio table is written to the terminal
at the end of the module and to ``.benchmarks/nas_step_costs.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from applications.nas.commands.search import PRESETS
from applications.nas.common.data import load_dataset, split_train_val
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig
from applications.nas.searching.loop import _Search

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


VARIANTS = {**{m: {"method": m} for m in GRADIENT_METHODS}, "idarts-shared": {"method": "idarts", "share_batch": True}}
"""Each method at its defaults, and iDARTS with the mixed product on its last Hessian term's batch."""


def _search(variant: str, split: tuple[Any, Any]) -> _Search:
    config = SearchConfig(**{**PRESETS["cpu-demo"], **VARIANTS[variant]})
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


@pytest.mark.parametrize("method", VARIANTS)
def test_search_step_cost(method: str, split: tuple[Any, Any], benchmark: Any) -> None:
    search = _search(method, split)
    step = _search_step(search)
    step()  # warm-up: allocator and autograd caches
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    seconds = benchmark.stats.stats.min
    peak = peak_memory_bytes(step)
    RESULTS[method] = {"seconds_per_step": seconds, "peak_bytes": float(peak)}
    benchmark.extra_info.update(RESULTS[method])


def _fastest_seconds(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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
        "weight_steps": config.inner_steps * _fastest_seconds(weight_step),
        "outer_gradient": _fastest_seconds(outer_gradient),
        "hvps": config.neumann_terms * _fastest_seconds(hvp),
        "mixed_product": _fastest_seconds(mixed_product),
    }
    step = _search_step(search)
    step()
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    whole = benchmark.stats.stats.min
    budget = sum(parts.values())
    benchmark.extra_info.update({**parts, "sum_of_parts": budget, "idarts_step": whole, "ratio": whole / budget})
    RESULTS["idarts_parts"] = {**parts, "sum_of_parts": budget, "idarts_step": whole, "ratio_to_parts": whole / budget}
    assert whole <= 1.10 * budget


@pytest.fixture(scope="module", autouse=True)
def _ratio_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: the ratios to darts-1st and the iDARTS parts, on the terminal and in a JSON file."""
    yield
    if "darts-1st" not in RESULTS:  # the ratios need the baseline; a -k selection may leave others out
        return
    base = RESULTS["darts-1st"]
    table = {m: {"seconds_per_step": RESULTS[m]["seconds_per_step"],
                 "time_ratio": RESULTS[m]["seconds_per_step"] / base["seconds_per_step"],
                 "peak_mib": RESULTS[m]["peak_bytes"] / 2**20,
                 "memory_ratio": RESULTS[m]["peak_bytes"] / base["peak_bytes"]} for m in VARIANTS if m in RESULTS}
    lines = ["", "NAS search step (cpu-demo configuration, 1 thread; fastest round)",
             f"{'method':<14} {'s/step':>8} {'x darts-1st':>12} {'peak MiB':>9} {'x darts-1st':>12}"]
    lines += [f"{m:<14} {r['seconds_per_step']:>8.3f} {r['time_ratio']:>12.2f} {r['peak_mib']:>9.1f} "
              f"{r['memory_ratio']:>12.2f}" for m, r in table.items()]
    parts = RESULTS.get("idarts_parts")
    if parts:
        lines.append("iDARTS step vs its parts: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    writer = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if writer is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # fixture teardown output is captured otherwise
            for line in lines:
                writer.write_line(line)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"methods": table, "idarts_parts": parts}, indent=2) + "\n")
