"""Time the NAS-Bench-201 search step of the paper's setting on a GPU and project a 50-epoch search.

    python benchmarks/gpu_search_cost.py --device cuda --steps 200 --out gpu_search_cost.json

The paper's supernet (C=16, N=5, 32x32 images, batch 64, iDARTS T=1, K=2) on CIFAR-shaped random
images: a step's time and memory do not depend on the pixel values, so the script needs no dataset and
runs on a machine without network access. For each of darts-1st, darts-2nd and idarts it runs a few
warm-up steps, then ``--steps`` timed search steps (one weight step + one architecture step, as the
search loop does), synchronising the device before reading the clock; it reports seconds per step,
peak device memory, and the projected time of a 50-epoch search (25,000 weight images / batch 64 =
390 steps per epoch) next to the search costs NAS-Bench-201 reports for DARTS (first order 10,890 s,
second order 29,902 s on its GPU). Sized to finish in about 8 minutes on one recent GPU with the
defaults; ``--steps`` and ``--methods`` shorten it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from applications.nas.common.data import ImageSet
from applications.nas.searching.config import SearchConfig
from applications.nas.searching.loop import _Search

STEPS_PER_EPOCH = 25_000 // 64
REPORTED = {"darts-1st": 10_890.0, "darts-2nd": 29_902.0}  # NAS-Bench-201 paper, search seconds on its GPU


def _random_cifar(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageSet(images, labels, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def time_method(method: str, args: argparse.Namespace) -> dict[str, float]:
    config = SearchConfig(method=method, dataset="cifar10", channels=args.channels, cells_per_stage=args.cells,
                          batch_size=args.batch_size, epochs=50, device=args.device)
    n = args.batch_size * (args.steps + args.warmup + 4) * 2
    search = _Search(config, _random_cifar(n, 0), _random_cifar(n, 1))
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    lr = config.w_lr

    def step() -> None:
        batch = search.train_stream()
        search.weight_step(batch)
        search.arch_step(lr, batch)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds_per_step": seconds, "peak_mib": peak,
            "projected_50_epoch_hours": seconds * STEPS_PER_EPOCH * 50 / 3600}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--methods", nargs="+", default=["darts-1st", "darts-2nd", "idarts"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    results = {}
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
          f"C={args.channels}, N={args.cells}, 32x32, batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'method':<10} {'s/step':>8} {'peak MiB':>9} {'50 epochs (h)':>14} {'NAS-Bench-201 reports (h)':>26}")
    for method in args.methods:
        r = results[method] = time_method(method, args)
        reported = f"{REPORTED[method] / 3600:.2f}" if method in REPORTED else "-"
        print(f"{method:<10} {r['seconds_per_step']:>8.4f} {r['peak_mib']:>9.0f} {r['projected_50_epoch_hours']:>14.2f} "
              f"{reported:>26}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"device": args.device, "settings": vars(args) | {"out": str(args.out)},
                                        "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
