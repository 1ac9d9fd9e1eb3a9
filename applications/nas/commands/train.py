"""Command line: retrain a derived cell from scratch and report its test accuracy.

    python -m applications.nas.train --result runs/idarts/result.json --dataset mnist5k --image-size 14 \\
        --epochs 30 --out runs/idarts-retrain
    python -m applications.nas.train --genotype "Genotype(normal=[...], ...)" --dataset mnist5k --out runs/g
    torchrun --nproc_per_node=8 -m applications.nas.train --result runs/darts/result.json --preset darts-paper \\
        --dataset cifar10 --data-dir data --device cuda --out runs/darts-eval     (DARTS's CIFAR-10 evaluation)

A NAS-Bench-201 cell (``--arch``, or a search's ``result.json`` whose ``arch`` is one) is trained in the
NAS-Bench-201 macro skeleton (:class:`~applications.nas.retraining.nb201.DerivedNetwork`) with SGD, Nesterov
momentum 0.9, cosine schedule, as NAS-Bench-201 trains its cells. A DARTS genotype (``--genotype``, or a
``result.json`` of a ``--space darts`` search) is trained in DARTS's evaluation network
(:class:`~applications.nas.retraining.darts.DartsEvalNetwork`: stacked cells, reductions at 1/3 and 2/3,
auxiliary head, drop-path rising linearly to its final value, cutout, cosine schedule, gradient clipping).
The defaults are sized for a small CPU; ``--preset darts-paper`` is DARTS's CIFAR-10 setting (36 channels,
20 cells, batch 96, 600 epochs, lr 0.025, weight decay 3e-4, auxiliary weight 0.4, drop-path 0.2,
cutout 16, crop and flip), for a GPU. Evaluation: the official test set where the dataset has one
(CIFAR), else a seeded held-out fifth of the training images.

Every epoch ends with an atomic ``checkpoint.pt`` in ``--out``; ``--resume DIR`` continues from it (the
checkpoint holds tensors and plain values only and is read with ``torch.load(weights_only=True)``, see
:mod:`applications.checkpoints`: a checkpoint from someone else runs no code). The
result goes to ``train_result.json`` (not ``result.json``, so that ``--out`` may be the search's folder).
Under ``torchrun`` training is data-parallel (:mod:`applications.nas.common.distributed`); process 0 writes.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from applications import checkpoints
from applications.nas.benchmark.table import BenchmarkTable, TableError, describe_cell, shipped_table
from applications.nas.commands.arguments import (
    ArgumentParser,
    arch_string,
    existing_dir,
    existing_file,
    existing_output_dir,
    fraction,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_cli,
    torch_device,
)
from applications.nas.commands.result_file import parse_cell, read_search_result
from applications.nas.common.backend import configure as configure_backend
from applications.nas.common.backend import settings as backend_settings
from applications.nas.common.data import DATASETS, BatchStream, DataError, load_dataset, split_train_val
from applications.nas.common.distributed import DataParallel
from applications.nas.common.evaluation import evaluate
from applications.nas.common.files import atomic_write_bytes, atomic_write_text
from applications.nas.retraining.darts import DartsEvalNetwork
from applications.nas.retraining.nb201 import DerivedNetwork
from applications.nas.spaces.darts.genotype import Genotype, GenotypeError
from applications.nas.spaces.nb201.genotype import ArchStringError, Cell

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KIND = "nas-train"
CHECKPOINT_VERSION = 2  # 2: tensors and plain values only, read with weights_only=True
RESULT = "train_result.json"

DEFAULTS: dict[str, dict[str, Any]] = {
    "nb201": {"channels": 16, "cells_per_stage": 5, "epochs": 30, "batch_size": 64, "lr": 0.1, "weight_decay": 5e-4,
              "auxiliary_weight": 0.0, "drop_path": 0.0, "cutout": 0, "grad_clip": 5.0},
    "darts": {"channels": 8, "layers": 8, "epochs": 10, "batch_size": 64, "lr": 0.025, "weight_decay": 3e-4,
              "auxiliary_weight": 0.4, "drop_path": 0.2, "cutout": 0, "grad_clip": 5.0},
}
"""Settings sized for a 2-core CPU, per kind of cell."""

PRESETS: dict[str, dict[str, Any]] = {
    "darts-paper": {"channels": 36, "layers": 20, "epochs": 600, "batch_size": 96, "lr": 0.025, "weight_decay": 3e-4,
                    "auxiliary_weight": 0.4, "drop_path": 0.2, "cutout": 16, "grad_clip": 5.0, "augment": True},
}
"""DARTS's CIFAR-10 evaluation (Liu et al., ICLR 2019, section 3.2), for a GPU."""


def genotype_string(text: str) -> str:
    """argparse type: a DARTS genotype as printed, ``Genotype(normal=[...], normal_concat=[...], ...)``."""
    try:
        Genotype.parse(text)
    except GenotypeError as err:
        raise argparse.ArgumentTypeError(str(err).strip().splitlines()[0]) from None
    return text


def _arch_from_result(result: Path) -> str:
    return str(read_search_result(result, {"arch": str})["arch"])


#: The settings a training checkpoint must hold, with their types (the others are checked where they are used).
_SETTINGS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "arch": str, "kind": str, "dataset": str, "seed": (int,), "epochs": (int,), "batch_size": (int,),
    "lr": (int, float), "weight_decay": (int, float), "grad_clip": (int, float), "augment": bool, "device": str,
}


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """The training checkpoint in ``folder``, read without running code from it and checked field by field.

    Raises:
        CheckpointError: (a ``ValueError``) one line naming the file and what was expected.
    """
    path = folder / CHECKPOINT
    checkpoint = checkpoints.load(path, CHECKPOINT_KIND, CHECKPOINT_VERSION,
                                  "the checkpoint.pt of a training (its --out folder)")
    checkpoints.require(checkpoint, {"settings": dict, "model": dict, "optimizer": dict, "stream": dict,
                                     "cutout": torch.Tensor, "epochs_done": (int,), "seconds": (int, float),
                                     "rng": dict}, path)
    settings = checkpoint["settings"]
    checkpoints.require(settings, _SETTINGS_FIELDS, path, "settings")
    kind = settings["kind"] if settings["kind"] in DEFAULTS else "nb201"
    checkpoints.require(settings, {name: (int,) if isinstance(value, int) else (int, float)
                                   for name, value in DEFAULTS[kind].items()}, path, "settings")
    checkpoints.require(settings, {"data_dir": (str, type(None)), "image_size": (int, type(None)),
                                   "train_subset": (int, type(None))}, path, "settings")
    checkpoints.require_finite(checkpoint["model"], path, "model")
    try:
        parse_cell(settings["arch"])
    except (ArchStringError, GenotypeError) as err:
        raise checkpoints.CheckpointError(f"{path}: settings['arch'] is not a cell ({str(err).strip().splitlines()[0]})"
                                          ) from None
    if not 0 <= checkpoint["epochs_done"] <= settings["epochs"]:
        raise checkpoints.CheckpointError(f"{path}: epochs_done {checkpoint['epochs_done']} is outside 0..epochs")
    return checkpoint


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m applications.nas.train``."""
    parser = ArgumentParser(prog="python -m applications.nas.train",
                            description="Train a derived cell (NAS-Bench-201 or DARTS) from scratch and report test "
                                        "accuracy.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", type=arch_string, help="NAS-Bench-201 string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    which.add_argument("--genotype", type=genotype_string, help="DARTS genotype, as a DARTS search prints it")
    which.add_argument("--result", type=existing_file, help="a search's result.json (its 'arch' is trained)")
    which.add_argument("--resume", type=existing_output_dir, metavar="DIR", help="continue from DIR/checkpoint.pt")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="darts-paper: DARTS's CIFAR-10 evaluation (GPU)")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist5k", help="training images [mnist5k]")
    parser.add_argument("--data-dir", type=existing_dir, help="folder holding cifar-10-batches-py/ or cifar-100-python/")
    parser.add_argument("--image-size", type=positive_int, help="resize images to this side")
    parser.add_argument("--train-subset", type=positive_int, help="use this many training images")
    parser.add_argument("--channels", type=positive_int, help="C [16 NAS-Bench-201, 8 DARTS]")
    parser.add_argument("--cells-per-stage", type=positive_int, help="N of the NAS-Bench-201 network [5]")
    parser.add_argument("--layers", type=positive_int, help="cells of the DARTS network, at least 3 [8]")
    parser.add_argument("--epochs", type=positive_int, help="training epochs [30 NAS-Bench-201, 10 DARTS]")
    parser.add_argument("--batch-size", type=positive_int, help="global mini-batch size [64]")
    parser.add_argument("--lr", type=positive_float, help="initial SGD learning rate, cosine to 0 [0.1, 0.025 DARTS]")
    parser.add_argument("--weight-decay", type=nonnegative_float, help="weight decay [5e-4, 3e-4 DARTS]")
    parser.add_argument("--auxiliary-weight", type=nonnegative_float,
                        help="weight of the auxiliary head's loss, 0 for none (DARTS only) [0.4]")
    parser.add_argument("--drop-path", type=nonnegative_float, help="final drop-path probability (DARTS only) [0.2]")
    parser.add_argument("--cutout", type=nonnegative_int, help="side of the cutout square, 0 for none [0]")
    parser.add_argument("--grad-clip", type=positive_float, help="gradient norm clip [5]")
    parser.add_argument("--augment", action="store_true", default=None, help="random crop and flip")
    parser.add_argument("--val-fraction", type=fraction, default=0.0,
                        help="hold out this share of the training images as a validation split and report the "
                             "accuracy on it too, so that cells can be compared without the test set [0]")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed [0]")
    parser.add_argument("--device", type=torch_device,
                        help="torch device; with --resume, the device to continue on (the checkpoint's otherwise) [cpu]")
    parser.add_argument("--tf32", action="store_true", help="TF32 matrix products and convolutions on GPUs [off]")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic GPU kernels, no cuDNN autotuning (docs/nas.md, GPU) [off]")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch [1]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=output_dir, help="folder for checkpoint.pt and train_result.json")
    parser.add_argument("--nb201-table", type=existing_file,
                        help="NAS-Bench-201 accuracy CSV (plain or gzipped) in which a NAS-Bench-201 cell's published "
                             "accuracies are looked up for comparison [the table shipped with the package]")
    return parser


def _settings(args: argparse.Namespace, arch: str) -> dict[str, Any]:
    """The command line over the preset over the defaults of the cell's kind: everything a run depends on."""
    kind = "darts" if isinstance(parse_cell(arch), Genotype) else "nb201"
    settings: dict[str, Any] = {"arch": arch, "kind": kind, **DEFAULTS[kind], **PRESETS.get(args.preset or "", {})}
    for name in (*DEFAULTS[kind], "augment"):
        if getattr(args, name, None) is not None:
            settings[name] = getattr(args, name)
    settings.setdefault("augment", False)
    if kind == "nb201":
        for name in ("layers", "auxiliary_weight", "drop_path"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} applies to DARTS genotypes, not to a NAS-Bench-201 cell")
    elif args.cells_per_stage is not None:
        raise ValueError("--cells-per-stage applies to NAS-Bench-201 cells; a DARTS network takes --layers")
    if kind == "darts" and settings["layers"] < 3:
        raise ValueError(f"--layers {settings['layers']}: a DARTS network needs at least 3 cells")
    settings.update(dataset=args.dataset, data_dir=None if args.data_dir is None else str(args.data_dir),
                    image_size=args.image_size, train_subset=args.train_subset, val_fraction=args.val_fraction,
                    seed=args.seed, device=args.device or "cpu", tf32=args.tf32, deterministic=args.deterministic)
    return settings


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Each image with one ``size`` x ``size`` square (centred uniformly, clipped at the border) set to 0."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1, 1), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n, 1, 1, 1), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, 1, w)
    half = size // 2
    inside = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
    return x.masked_fill(inside, 0.0)


def build_network(cell: Cell | Genotype, settings: dict[str, Any], in_channels: int, num_classes: int) -> nn.Module:
    """The evaluation network of ``cell``'s kind."""
    if isinstance(cell, Genotype):
        return DartsEvalNetwork(cell, settings["channels"], settings["layers"], in_channels, num_classes,
                                auxiliary=settings["auxiliary_weight"] > 0)
    return DerivedNetwork(cell, settings["channels"], settings["cells_per_stage"], in_channels, num_classes)


def parameter_count(net: nn.Module) -> int:
    """Parameters used at test time (the auxiliary head excluded, as DARTS counts them)."""
    return sum(p.numel() for name, p in net.named_parameters() if not name.startswith("auxiliary."))


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, auxiliary_weight: float) -> torch.Tensor:
    out = net(x)
    if isinstance(out, tuple):
        logits, aux = out
        loss = F.cross_entropy(logits, y)
        return loss + auxiliary_weight * F.cross_entropy(aux, y) if aux is not None else loss
    return F.cross_entropy(out, y)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    checkpoint: dict[str, Any] | None = None
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        settings, out = checkpoint["settings"], args.resume
        if args.device is not None:  # the given device overrides the checkpoint's
            settings = {**settings, "device": args.device}
    else:
        arch = args.arch or args.genotype or _arch_from_result(args.result)
        settings, out = _settings(args, arch), args.out

    torch.set_num_threads(args.threads)
    cell = parse_cell(settings["arch"])
    # Read before training, so that a bad table fails in seconds, not after the training.
    table = (BenchmarkTable.from_csv(args.nb201_table) if args.nb201_table is not None else shipped_table()) \
        if isinstance(cell, Cell) else None
    # Before CUDA initialises (which joining a torchrun job does): deterministic cuBLAS needs that order.
    configure_backend(settings["device"], tf32=settings.get("tf32", False),
                      deterministic=settings.get("deterministic", False))
    parallel = DataParallel.from_environment(settings["device"])
    parallel.check_batch_size(settings["batch_size"])
    dataset = load_dataset(settings["dataset"], settings["data_dir"], settings["image_size"])
    val_fraction = settings.get("val_fraction", 0.0)
    if dataset.test is not None:
        # The validation split comes out of the training images only; the test images stay unseen.
        train, val = split_train_val(dataset.train, settings["seed"], settings["train_subset"], val_fraction)
        test, test_name = dataset.test, "official test set"
    else:
        train, test = split_train_val(dataset.train, settings["seed"], settings["train_subset"], val_fraction=0.2)
        test_name = "held-out fifth of the training images"
        train, val = split_train_val(train, settings["seed"] + 1, None, val_fraction) if val_fraction else \
            (train, train.subset(torch.arange(0)))
    if val_fraction and (len(val) == 0 or len(train) < settings["batch_size"]):
        raise ValueError(f"--val-fraction {val_fraction} leaves {len(train)} training and {len(val)} validation "
                         f"images; expected at least --batch-size {settings['batch_size']} and 1")
    device = parallel.device(settings["device"])
    torch.manual_seed(settings["seed"])
    net = build_network(cell, settings, train.in_channels, train.num_classes).to(device)
    # DARTS trains its evaluation network with plain momentum; NAS-Bench-201 with Nesterov's.
    optimizer = torch.optim.SGD(net.parameters(), lr=settings["lr"], momentum=0.9, nesterov=settings["kind"] == "nb201",
                                weight_decay=settings["weight_decay"])
    stream = BatchStream(train, settings["batch_size"], settings["seed"] + 1, settings["augment"], device)
    holes = torch.Generator().manual_seed(settings["seed"] + 2)
    epochs_done, seconds = 0, 0.0
    if checkpoint is not None:
        path = args.resume / CHECKPOINT
        try:
            net.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            stream.load_state_dict(checkpoint["stream"])
            holes.set_state(checkpoint["cutout"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise checkpoints.CheckpointError(f"{path} does not fit the network its own settings describe ({first}); "
                                              "expected the checkpoint.pt that training wrote") from None
        checkpoints.set_rng_state(checkpoint["rng"], path, device)
        epochs_done, seconds = checkpoint["epochs_done"], checkpoint["seconds"]
    if out is not None and parallel.is_writer:
        out.mkdir(parents=True, exist_ok=True)

    epochs, steps = settings["epochs"], stream.batches_per_pass
    with tqdm(total=epochs * steps, initial=epochs_done * steps, unit="step", dynamic_ncols=True,
              disable=args.no_progress or not parallel.is_writer) as bar:
        for epoch in range(epochs_done, epochs):
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * settings["lr"] * (1 + math.cos(math.pi * epoch / epochs))
            if isinstance(net, DartsEvalNetwork):
                net.drop_path_prob = settings["drop_path"] * epoch / epochs
            for _ in range(steps):
                x, y = stream()
                if settings["cutout"]:
                    x = cutout(x, settings["cutout"], holes)
                x, y = parallel.shard((x, y))
                loss = _loss(net, x, y, settings["auxiliary_weight"])
                params = [p for p in net.parameters() if p.requires_grad]
                # A cell whose node feeds only `none` edges leaves the operations into that node unused.
                grads = [torch.zeros_like(p) if g is None else g
                         for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]
                *grads, loss_mean = parallel.average([*grads, loss.detach()])
                for p, g in zip(params, grads):
                    p.grad = g
                nn.utils.clip_grad_norm_(params, settings["grad_clip"])
                optimizer.step()
                bar.set_description(f"epoch {epoch + 1}/{epochs}")
                bar.set_postfix(loss=f"{float(loss_mean or 0.0):.3f}", refresh=False)
                bar.update(1)
            parallel.average_buffers(net)
            seconds += time.perf_counter() - started
            if out is not None and parallel.is_writer:
                state = checkpoints.pack(CHECKPOINT_KIND, CHECKPOINT_VERSION, {
                    "settings": settings, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "stream": stream.state_dict(), "cutout": holes.get_state(), "epochs_done": epoch + 1,
                    "seconds": seconds, "rng": checkpoints.rng_state()})
                atomic_write_bytes(out / CHECKPOINT, functools.partial(torch.save, state))
            parallel.barrier()
    _, test_acc = evaluate(net, test, device)
    val_acc = evaluate(net, val, device)[1] if len(val) else None
    if not parallel.is_writer:
        return 0
    result = {"arch": str(cell), "kind": settings["kind"], "connected": cell.is_connected(),
              "dataset": settings["dataset"], "test_accuracy": test_acc, "evaluated_on": test_name,
              "val_accuracy": val_acc, "val_images": len(val),
              "parameters": parameter_count(net), "epochs": epochs, "processes": parallel.world_size,
              "settings": settings, "wall_time_s": seconds, "backend": backend_settings(device)}
    if val_acc is not None:
        print(f"{cell}: validation accuracy {100 * val_acc:.2f}% on {len(val)} held-out training images")
    print(f"{cell}: test accuracy {100 * test_acc:.2f}% on the {test_name} of {settings['dataset']} "
          f"({result['parameters'] / 1e6:.2f}M parameters, {seconds:.0f} s)")
    if isinstance(cell, Cell):
        result["benchmark"] = entry = describe_cell(cell, table)
        if entry is not None:
            print(f"NAS-Bench-201 (this cell trained 200 epochs at C=16, N=5 on CIFAR-10): test accuracy "
                  f"{entry['cifar10_test']:.2f}%, percentile {entry['percentile']['cifar10_test']:.1f} of "
                  f"{entry['cells_in_table']:,} cells")
    if out is not None:
        atomic_write_text(out / RESULT, json.dumps(result, indent=2) + "\n")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.train",
                   (ArchStringError, GenotypeError, DataError, TableError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(cli())
