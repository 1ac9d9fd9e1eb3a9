"""Command line: retrain a derived cell from scratch and report its test accuracy.

    python -m applications.nas.train --result runs/idarts/result.json --dataset mnist5k --image-size 14 \\
        --channels 16 --cells-per-stage 5 --epochs 30 --out runs/idarts-retrain

The network is the NAS-Bench-201 macro skeleton with the one cell repeated (BatchNorm without affine
parameters, running statistics tracked). Training: SGD with Nesterov momentum 0.9, weight decay 5e-4,
cosine schedule, as NAS-Bench-201 trains its cells. Evaluation: the official test set where the dataset
has one (CIFAR), else a seeded held-out fifth of the training images.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from applications.nas.cli import (
    ArgumentParser,
    arch_string,
    existing_dir,
    existing_file,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_cli,
    torch_device,
)
from applications.nas.data import DATASETS, BatchStream, DataError, load_dataset, split_train_val
from applications.nas.evaluation import evaluate
from applications.nas.genotype import ArchStringError, Cell
from applications.nas.network import DerivedNetwork
from applications.nas.search_loop import atomic_write_text


def _cell_from_args(arch: str | None, result: Path | None) -> Cell:
    if arch is not None:
        return Cell.parse(arch)
    assert result is not None  # argparse has checked that it is a readable file
    try:
        return Cell.parse(json.loads(result.read_text())["arch"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"--result {result} is not a search result.json with an 'arch' entry") from None


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.nas.train``."""
    parser = ArgumentParser(prog="python -m applications.nas.train",
                            description="Train a NAS-Bench-201 cell from scratch and report test accuracy.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", type=arch_string, help="architecture string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    which.add_argument("--result", type=existing_file, help="a search's result.json (its 'arch' is trained)")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist5k", help="training images [mnist5k]")
    parser.add_argument("--data-dir", type=existing_dir, help="folder holding cifar-10-batches-py/ or cifar-100-python/")
    parser.add_argument("--image-size", type=positive_int, help="resize images to this side")
    parser.add_argument("--train-subset", type=positive_int, help="use this many training images")
    parser.add_argument("--channels", type=positive_int, default=16, help="C [16]")
    parser.add_argument("--cells-per-stage", type=positive_int, default=5, help="N [5]")
    parser.add_argument("--epochs", type=positive_int, default=30, help="training epochs [30]")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size [64]")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="initial SGD learning rate, cosine to 0 [0.1]")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=5e-4, help="weight decay [5e-4]")
    parser.add_argument("--augment", action="store_true", help="random crop and flip")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed [0]")
    parser.add_argument("--device", type=torch_device, default="cpu", help="torch device [cpu]")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch [1]")
    parser.add_argument("--out", type=output_dir, help="folder for train_result.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cell = _cell_from_args(args.arch, args.result)
    dataset = load_dataset(args.dataset, args.data_dir, args.image_size)
    if dataset.test is not None:
        train, test = split_train_val(dataset.train, args.seed, args.train_subset, val_fraction=0.0)[0], dataset.test
        test_name = "official test set"
    else:
        train, test = split_train_val(dataset.train, args.seed, args.train_subset, val_fraction=0.2)
        test_name = "held-out fifth of the training images"
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = DerivedNetwork(cell, args.channels, args.cells_per_stage, train.in_channels, train.num_classes).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)
    stream = BatchStream(train, args.batch_size, args.seed + 1, args.augment, device)
    steps = stream.batches_per_pass
    started = time.perf_counter()
    with tqdm(total=args.epochs * steps, unit="step", dynamic_ncols=True) as bar:
        for epoch in range(args.epochs):
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
            for _ in range(steps):
                x, y = stream()
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                optimizer.step()
                bar.set_description(f"epoch {epoch + 1}/{args.epochs}")
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
                bar.update(1)
    _, test_acc = evaluate(net, test, device)
    result = {"arch": str(cell), "connected": cell.is_connected(), "dataset": args.dataset,
              "test_accuracy": test_acc, "evaluated_on": test_name, "epochs": args.epochs,
              "channels": args.channels, "cells_per_stage": args.cells_per_stage,
              "wall_time_s": time.perf_counter() - started}
    print(f"{cell}: test accuracy {100 * test_acc:.2f}% on the {test_name} of {args.dataset}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "train_result.json", json.dumps(result, indent=2) + "\n")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.train",
                   (ArchStringError, DataError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(cli())
