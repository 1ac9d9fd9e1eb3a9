"""Speed-up of a data-parallel search: the same search with 1 and with P processes (``torchrun``).

    python benchmarks/data_parallel_speedup.py --processes 2 --method idarts        # CPU, gloo
    python benchmarks/data_parallel_speedup.py --processes 8 --device cuda --channels 16 --cells-per-stage 5 \\
        --image-size 32 --dataset cifar10 --data-dir data                            # GPUs, nccl

Each run is ``python -m applications.nas.search`` under ``torchrun --standalone``; the figure is the
mean seconds per step of the last epoch (``log.jsonl``, written by process 0), so start-up, data
loading and the first epoch's warm-up are left out. The P-process search runs twice: with BatchNorm
over the global batch (the default, ``--bn-sync``) and with per-process statistics (``--no-bn-sync``),
so the table shows what synchronising BatchNorm costs. Prints one Markdown table row per method.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(processes: int, method: str, extra: list[str], threads: int) -> float:
    """Mean seconds per step of the last epoch of one search with ``processes`` processes."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "applications.nas.search", "--method", method, "--out", out, "--no-progress",
                   "--threads", str(threads), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        log = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    return float(log[-1]["seconds_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--method", nargs="+", default=["darts-1st", "idarts"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args, extra = parser.parse_known_args()
    extra = extra or ["--dataset", "mnist5k", "--image-size", "14", "--train-subset", "1280", "--channels", "4",
                      "--cells-per-stage", "1", "--batch-size", "64", "--epochs", "2"]
    p = args.processes
    print(f"| method | 1 process, s/step | {p} processes, s/step | speed-up | {p} processes, per-process "
          "BatchNorm, s/step | BatchNorm sync, s/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in args.method:
        one = seconds_per_step(1, method, extra, args.threads)
        many = seconds_per_step(p, method, [*extra, "--bn-sync"], args.threads)
        ghost = seconds_per_step(p, method, [*extra, "--no-bn-sync"], args.threads)
        print(f"| {method} | {one:.3f} | {many:.3f} | {one / many:.2f}× | {ghost:.3f} | {many - ghost:+.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
