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

``test_op_and_host_read_counts`` counts, with :class:`OpCounter` (a ``TorchDispatchMode``), the aten ops and
the host reads of one weight step and one architecture step of each method at the paper's supernet size
(C=16, N=5). The counts depend on neither the batch nor the image size, so a batch of 2 images of 8x8 serves
(and a CPU: on a GPU the same ops are the same kernel launches). A host read is an op that brings device
memory to the host (``_local_scalar_dense`` behind ``.item()``, ``float()``, ``bool()``; ``nonzero``, ...) or a
``.tolist()``/``.numpy()``, which the CPU does without an aten op; on a GPU each is a synchronisation.
``python -m benchmarks.bench_nas`` prints the table (with the op names behind each count and where each
host read happens).

Run: ``make bench`` or ``pytest benchmarks --benchmark-only``. The ratio table is written to the terminal
at the end of the module and to ``.benchmarks/nas_step_costs.json``.
"""

from __future__ import annotations

import collections
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from applications.nas.commands.search import PRESETS
from applications.nas.common.data import ImageSet, load_dataset, split_train_val
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


HOST_READ_OPS = frozenset({"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "_unique2",
                           "unique_consecutive", "unique_dim"})
"""Aten ops whose result (a Python number, or an output whose shape depends on the data) needs device memory
on the host."""


class OpCounter(TorchDispatchMode):
    """Counts the aten ops run inside it (views apart: they launch no kernel) and the host reads.

    Args:
        host_scalars: tensors that live on the host by design whatever the device (Adam's step counts):
            reading them is no synchronisation, so they are not counted.

    Attributes:
        ops: aten op name -> calls, views excluded.
        views: calls of view ops (``aten.view``, ``select``, ``t``, ...).
        host_reads: ``file:line`` of the project code that made each host read, in order.
    """

    def __init__(self, host_scalars: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self._host_scalars = {id(t) for t in host_scalars}
        self.ops: collections.Counter[str] = collections.Counter()
        self.views = 0
        self.host_reads: list[str] = []
        self._patched: dict[str, Any] = {}

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def _where(self) -> str:
        root = str(Path(__file__).resolve().parents[1])
        frames = [f for f in traceback.extract_stack()[:-2]
                  if f.filename.startswith(root) and not f.filename.endswith("bench_nas.py")]
        return f"{Path(frames[-1].filename).relative_to(root)}:{frames[-1].lineno}" if frames else "?"

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if getattr(func, "is_view", False):
            self.views += 1
        else:
            self.ops[func.overloadpacket.__name__] += 1
            if func.overloadpacket.__name__ in HOST_READ_OPS and id(args[0]) not in self._host_scalars:
                self.host_reads.append(self._where())
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> OpCounter:
        # ``tolist`` and ``numpy`` read CPU memory without dispatching an op; count them at the Python level.
        for name in ("tolist", "numpy"):
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def counted(t: torch.Tensor, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.host_reads.append(self._where())
                return _original(t, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)


COUNT_METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg")
OP_TARGETS = {"weight step": 3000, "darts-1st": 3500, "darts-2nd": 10000, "idarts": 20000, "implicit-cg": 30000}
"""Aten ops per step at C=16, N=5 (issue 15); every step also at most 2 host reads."""


def paper_size_search(method: str, batch_size: int = 2, image_size: int = 8) -> _Search:
    """A search of ``method`` with the paper's NB201 supernet (C=16, N=5) on random images: op counts depend
    on neither the data nor the batch and image sizes."""
    gen = torch.Generator().manual_seed(0)
    n = 8 * batch_size

    def images() -> ImageSet:
        x = torch.randint(0, 256, (n, 3, image_size, image_size), generator=gen, dtype=torch.uint8)
        return ImageSet(x, torch.randint(0, 10, (n,), generator=gen), 10, (0.5,) * 3, (0.25,) * 3)

    return _Search(SearchConfig(method=method, dataset="cifar10", batch_size=batch_size), images(), images())


def count_step(search: _Search, part: str) -> OpCounter:
    """Ops and host reads of one weight step (``part="weight"``) or one architecture step (``"arch"``), after
    one uncounted step of each (lazy initialisation is not part of the step).

    The solvers are counted as they run on an accelerator, reading their residual every 10 iterations
    (``default_check_every``), which the NAS solvers' 5 iterations never reach; on a CPU they read it
    every iteration, where a read costs nothing.
    """
    batch = search.train_stream()
    search.weight_step(batch)
    search.arch_step(search.config.w_lr, batch)
    batch = search.train_stream()
    adam_steps = tuple(s["step"] for s in search.a_opt.state.values() if torch.is_tensor(s.get("step")))
    with pytest.MonkeyPatch.context() as patch:
        for module in ("hypergrad.solvers.cg", "hypergrad.solvers.minres"):
            patch.setattr(importlib.import_module(module), "default_check_every", lambda b: 10)
        with OpCounter(host_scalars=adam_steps) as counter:
            if part == "weight":
                search.weight_step(batch)
            else:
                search.arch_step(search.config.w_lr, batch)
    return counter


def op_count_table() -> dict[str, dict[str, Any]]:
    """Per step: aten ops, host reads and where they are, and the most frequent ops."""
    rows: dict[str, dict[str, Any]] = {}
    for name, method, part in [("weight step", "darts-1st", "weight"), *[(m, m, "arch") for m in COUNT_METHODS]]:
        counter = count_step(paper_size_search(method), part)
        rows[name] = {"ops": counter.total, "views": counter.views, "host_reads": len(counter.host_reads),
                      "host_read_sites": dict(collections.Counter(counter.host_reads)),
                      "top_ops": dict(counter.ops.most_common(12))}
    return rows


def test_op_and_host_read_counts() -> None:
    rows = op_count_table()
    RESULTS["op_counts"] = rows
    for name, row in rows.items():
        print(f"{name}: {row['ops']} ops, {row['host_reads']} host reads {row['host_read_sites']}")
    missed = {name: row["ops"] for name, row in rows.items() if row["ops"] > OP_TARGETS[name]}
    reads = {name: row["host_read_sites"] for name, row in rows.items() if row["host_reads"] > 2}
    assert not missed, f"aten ops per step above the targets {OP_TARGETS}: {missed}"
    assert not reads, f"more than 2 host reads per step: {reads}"


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
    REPORT.write_text(json.dumps({"methods": table, "idarts_parts": parts, "op_counts": RESULTS.get("op_counts")},
                                 indent=2) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    counts = op_count_table()
    json.dump(counts, sys.stdout, indent=1)
    print("\n| step (C=16, N=5) | aten ops | host reads |\n| --- | ---: | ---: |")
    for step, row in counts.items():
        print(f"| {step} | {row['ops']:,} | {row['host_reads']} |")
