"""The prepared GPU check of a NAS-Bench-201 search: does it run right, and how fast, on one GPU.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json          # sized for at most 8 minutes on one GPU
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json         # the same on the CPU, tiny

At the paper's setting (C=16, N=5, 32x32, batch 64, augmentation on both halves, CIFAR-shaped random images:
a step's cost does not depend on the pixels) and with the backend a search uses
(:mod:`applications.nas.common.backend`: TF32 off), for darts-1st, darts-2nd, idarts and implicit-cg:

1. ``gmres``: one ``hg.GMRES``-family solve on the device against ``torch.linalg.solve`` (GMRES once built
   a CPU index into its device iteration).
2. ``sync_per_step``: host synchronisations in one search step (weight step + architecture step), counted
   as the warnings of ``torch.cuda.set_sync_debug_mode("warn")``, with the places that made them.
3. ``profile``: ``torch.profiler`` over 3 steps (``--profile-steps``): kernels launched, GPU busy time (the kernels' summed
   durations) and wall time; busy/wall far below 1 means the host, not the GPU, bounds the step.
4. ``tf32``: ∂_α of one architecture step from the same state and batches, TF32 off and on: the relative
   difference of ∂_α and of the logits.
5. ``memory``: peak allocated and reserved device memory over the timed steps.
6. ``seconds_per_step`` with cuDNN autotuning on and off, and the projected 50-epoch search (25,000
   weight images / batch 64 = 390 steps per epoch) next to the reference times.
7. ``deterministic``: the warnings one step raises under ``--deterministic`` (operations without a
   deterministic kernel).

Everything goes into the ``--out`` JSON (with the backend settings); a table is printed as it goes.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import hypergrad as hg
from applications.nas.common import backend
from applications.nas.common.data import ImageSet
from applications.nas.searching.config import SearchConfig
from applications.nas.searching.estimators import estimator
from applications.nas.searching.loop import _Search
from hypergrad import solvers

STEPS_PER_EPOCH = 25_000 // 64
REFERENCE_HOURS = {
    "issue 15's figure for the paper's search": 24.0,
    "NAS-Bench-201, DARTS first order": 10_890 / 3600,
    "NAS-Bench-201, DARTS second order": 29_902 / 3600,
}
METHODS = ("darts-1st", "darts-2nd", "idarts", "implicit-cg")


def _random_set(n: int, size: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.randint(0, 10, (n,), generator=g), 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def _search(method: str, args: argparse.Namespace) -> _Search:
    config = SearchConfig(method=method, dataset="cifar10", channels=args.channels, cells_per_stage=args.cells,
                          batch_size=args.batch_size, epochs=50, device=args.device, augment=True)
    n = args.batch_size * 16
    return _Search(config, _random_set(n, args.image_size, 0), _random_set(n, args.image_size, 1))


def _step(search: _Search) -> None:
    batch = search.train_stream()
    search.weight_step(batch)
    search.arch_step(search.config.w_lr, batch)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_gmres(device: torch.device) -> dict[str, Any]:
    """One GMRES solve of a non-symmetric 64x64 system on ``device``, against a dense solve."""
    g = torch.Generator().manual_seed(0)
    n = 64
    a = (torch.eye(n) * 4 + torch.randn(n, n, generator=g) / n**0.5).to(device)
    b = torch.randn(n, generator=g).to(device)
    x, info = solvers.gmres(lambda v: {"x": a @ v["x"]}, {"x": b}, max_iter=200, tol=1e-6)
    exact = torch.linalg.solve(a, b)
    return {"ran": True, "relative_error": float((x["x"] - exact).norm() / exact.norm()), "iterations": info.iterations,
            "converged": info.converged}


def count_syncs(search: _Search, device: torch.device) -> dict[str, Any]:
    """Host synchronisations of one step, by ``torch.cuda.set_sync_debug_mode`` (CUDA only)."""
    if device.type != "cuda":
        return {"count": None, "why": "set_sync_debug_mode reports CUDA synchronisations only"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _step(search)
            _sync(device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    places = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower()]
    return {"count": len(places), "places": places}


def profile(search: _Search, device: torch.device, steps: int, trace: Path | None) -> dict[str, Any]:
    """Kernels, GPU busy time and wall time over ``steps`` steps."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    _sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            _step(search)
        _sync(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    cpu_ops = sum(1 for e in prof.events() if e.name.startswith("aten::"))
    return {"steps": steps, "wall_s": wall, "kernels": len(kernels), "aten_ops_cpu": cpu_ops,
            "gpu_busy_s": busy if device.type == "cuda" else None,
            "gpu_busy_fraction": busy / wall if device.type == "cuda" else None}


def tf32_effect(search: _Search, device: torch.device) -> dict[str, Any]:
    """∂_α and the logits of one architecture step from one state and one set of batches, TF32 off and on."""
    x, y = search.train_stream()
    val = search.val_stream()
    hessian = [search.train_stream() for _ in range(search.config.neumann_terms + 1)]
    method = estimator(search.config, search.config.w_lr)

    def grads(tf32: bool) -> tuple[torch.Tensor, torch.Tensor]:
        backend.configure(device, tf32=tf32)
        draws = itertools.cycle(hessian)
        source: Callable[[], Any] | tuple[torch.Tensor, torch.Tensor] = \
            (lambda: next(draws)) if search.config.method == "idarts" else (x, y)
        with torch.no_grad():
            logits = search.net(x)
        result = hg.hypergradient(search.loss, search.inner_loss, search.weights, search.alphas, outer_batch=val,
                                  inner_batch=source, method=method)
        return torch.cat([g.reshape(-1) for g in result.grads.values()]), logits

    exact, exact_logits = grads(False)
    rounded, rounded_logits = grads(True)
    backend.configure(device, tf32=False)
    return {"alpha_grad_relative_difference": float((rounded - exact).norm() / exact.norm()),
            "logits_relative_difference": float((rounded_logits - exact_logits).norm() / exact_logits.norm())}


def time_steps(method: str, args: argparse.Namespace, device: torch.device, benchmark: bool) -> dict[str, Any]:
    """Seconds per step after warm-up, with cuDNN autotuning on or off, and the peak memory."""
    backend.configure(device, benchmark=benchmark)
    search = _search(method, args)
    for _ in range(args.warmup):
        _step(search)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        _step(search)
    _sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    memory = ({"peak_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
               "peak_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20} if device.type == "cuda" else None)
    return {"seconds_per_step": seconds, "memory": memory,
            "projected_50_epoch_hours": seconds * STEPS_PER_EPOCH * 50 / 3600}


def deterministic_warnings(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The distinct warnings of one idarts step under the deterministic backend."""
    backend.configure(device, deterministic=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _step(_search("idarts", args))
            _sync(device)
    finally:
        backend.configure(device)
    return sorted({str(w.message).splitlines()[0] for w in caught if "determinis" in str(w.message).lower()})


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    record: dict[str, Any] = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "backend": backend.configure(device), "gmres": check_gmres(device), "methods": {},
                              "reference_hours": REFERENCE_HOURS, "steps_per_epoch": STEPS_PER_EPOCH}
    print(f"device {record['backend']['device_name']}, torch {torch.__version__}; C={args.channels}, N={args.cells}, "
          f"{args.image_size}x{args.image_size}, batch {args.batch_size}; GMRES relative error "
          f"{record['gmres']['relative_error']:.1e}", flush=True)
    print(f"{'method':<12}{'s/step':>9}{'no autotune':>12}{'50 ep. (h)':>11}{'syncs':>7}{'busy/wall':>10}"
          f"{'d_alpha tf32':>13}{'peak MiB':>10}", flush=True)
    for method in args.methods:
        timed = time_steps(method, args, device, benchmark=True)
        _free(device)
        untuned = time_steps(method, args, device, benchmark=False)
        _free(device)
        backend.configure(device)
        search = _search(method, args)
        for _ in range(args.warmup):
            _step(search)
        trace = args.out.with_name(f"{args.out.stem}-{method}-trace.json") if args.trace and args.out else None
        entry = {"autotuned": timed, "not_autotuned": untuned, "sync_per_step": count_syncs(search, device),
                 "profile": profile(search, device, args.profile_steps, trace), "tf32": tf32_effect(search, device)}
        record["methods"][method] = entry
        del search
        _free(device)
        busy = entry["profile"]["gpu_busy_fraction"]
        peak = timed["memory"]["peak_allocated_mib"] if timed["memory"] else float("nan")
        syncs = entry["sync_per_step"]["count"]
        print(f"{method:<12}{timed['seconds_per_step']:>9.4f}{untuned['seconds_per_step']:>12.4f}"
              f"{timed['projected_50_epoch_hours']:>11.2f}{'-' if syncs is None else syncs:>7}"
              f"{'-' if busy is None else f'{busy:.2f}':>10}{entry['tf32']['alpha_grad_relative_difference']:>13.2e}"
              f"{peak:>10.0f}", flush=True)
    record["deterministic_warnings"] = deterministic_warnings(args, device)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method and autotuning setting [30]")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--profile-steps", type=int, default=3, help="steps profiled per method [3]")
    parser.add_argument("--trace", action="store_true", help="also write each method's profiler trace (large)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the whole check on the CPU at a tiny size (C=2, N=1, 8x8, batch 4, 1 step each): that it runs")
    parser.add_argument("--out", type=Path, help="the JSON file of figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        args.device, args.channels, args.cells, args.image_size, args.batch_size = "cpu", 2, 1, 8, 4
        args.steps, args.warmup, args.profile_steps = 1, 0, 1
    record = run(args)
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
