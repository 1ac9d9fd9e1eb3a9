"""Command line: differentiable architecture search in the NAS-Bench-201 or the DARTS space.

    python -m applications.nas.search --space nb201 --dataset mnist5k --method idarts --epochs 10 \\
        --seed 0 --out runs/idarts [--nb201-table OTHER_TABLE.csv]
    python -m applications.nas.search --space darts --dataset mnist5k --image-size 14 --channels 4 \\
        --layers 3 --method darts-1st --epochs 2 --out runs/darts

Writes into ``--out``: ``result.json``, ``log.jsonl`` (one line per epoch), ``checkpoint.pt``
(rewritten atomically every epoch; ``--resume DIR`` continues from it) and, for ``--space nb201``,
``alpha.png`` (operation probabilities per edge over the epochs) and ``cell.png`` (the derived cell).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from applications.nas.benchmark.table import BenchmarkTable, TableError, describe_cell, shipped_table
from applications.nas.commands.arguments import (
    ArgumentParser,
    existing_dir,
    existing_dir_text,
    existing_file,
    existing_output_dir,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    run_cli,
    torch_device,
)
from applications.nas.commands.plots import draw_cell, plot_alpha_history
from applications.nas.common.backend import configure as configure_backend
from applications.nas.common.backend import settings as backend_settings
from applications.nas.common.data import BUNDLED_CIFAR10_SIZE, DATASETS, DataError
from applications.nas.common.distributed import DataParallel
from applications.nas.common.files import atomic_write_bytes, atomic_write_text
from applications.nas.searching.config import (
    ALPHA_LR_SCHEDULES,
    METHODS,
    PT_TIES,
    SELECTIONS,
    SearchConfig,
    SearchConfigError,
)
from applications.nas.searching.loop import (
    CHECKPOINT,
    LOG,
    SearchInterrupted,
    SearchState,
    load_checkpoint,
    run_search,
    stop_on_sigterm,
)
from applications.nas.searching.selection import clear_decisions
from applications.nas.spaces.nb201.derive import edge_probabilities
from applications.nas.spaces.nb201.genotype import EDGES, Cell
from applications.nas.spaces.nb201.network import ALPHA_NAME
from applications.nas.spaces.registry import (
    NB201,
    SPACES,
    alpha_probabilities,
    alpha_to_json,
    decisive_edges,
    format_alpha_tables,
    num_edges,
)

# The supernet, budget and alpha optimizer every CIFAR-10 preset shares (docs/nas.md, "Search on CIFAR-10").
_CIFAR_SIZE: dict[str, Any] = {"channels": 8, "cells_per_stage": 1, "epochs": 10, "alpha_lr": 0.1, "alpha_weight_decay": 0.0}
# The stabilisers the screening chose: beta-decay, and the cell chosen by perturbation on the whole alpha half
# (second round: 1,000 images scored lower), near ties going to the convolutions (fourth round: without it
# one screening seed collapsed to four parameter-free edges; docs/screening/rule.md).
_CIFAR_STABILISED: dict[str, Any] = {"method": "darts-1st", "beta_decay": 50.0, "selection": "pt", "pt_val_images": None,
                                     "pt_ties": "parametric"}
_CIFAR_FOLDER: dict[str, Any] = {"dataset": "cifar10", "image_size": 16, "train_subset": 10000}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # MNIST-5k at 14x14, about 2.5 minutes on a 2-core CPU. What it changes against the paper and why
    # is printed by the search and written in docs/nas.md.
    "cpu-demo": {
        "method": "idarts",
        "dataset": "mnist5k",
        "image_size": 14,
        "channels": 4,
        "cells_per_stage": 1,
        "epochs": 6,
        "alpha_lr": 0.1,
    },
    # What `make search` runs: cifar-cpu's settings on the CIFAR-10 subset shipped with the package (no
    # --data-dir, nothing downloaded; docs/nas.md).
    "cifar-demo": {**_CIFAR_SIZE, **_CIFAR_STABILISED, "dataset": "cifar10-bundled"},
    # CIFAR-10 on a 2-core CPU: DARTS first order with beta-decay, the cell chosen by perturbation, about
    # 10 minutes; chosen by a table-free rule over 4 screening seeds and confirmed on seeds 100-107 (docs/nas.md).
    "cifar-cpu": {**_CIFAR_SIZE, **_CIFAR_STABILISED, **_CIFAR_FOLDER},
    # The cifar-cpu preset before the stabilisers (iDARTS, argmax), kept to reproduce the baseline of docs/nas.md.
    "cifar-cpu-idarts": {**_CIFAR_SIZE, **_CIFAR_FOLDER, "method": "idarts"},
}
_CIFAR_CPU_DIFFERENCES = (
    "It differs from the paper's NAS-Bench-201 setting (iDARTS, 50 epochs, C=16, N=5) in: DARTS first order "
    "instead of iDARTS (2.7x cheaper per step here: the stabilisers were screened on it, docs/nas.md); "
    "beta-decay regularisation (beta-DARTS, lambda ramped 0 -> 50 over the search) "
    "in the outer loss; the cell chosen by perturbation (DARTS-PT: per edge, the operation whose removal costs "
    "the supernet the most accuracy on all 5,000 validation images, 50 fine-tuning steps between edges; where a "
    "convolution's drop is within two paired standard errors of a parameter-free best, the convolution) instead of "
    "the argmax of alpha, which is reported too; supernet C=8, N=1; 10 epochs (780 architecture steps); alpha "
    "Adam lr 0.1 instead of 3e-4, so that alpha moves within 780 steps; no alpha weight decay instead of 1e-3. "
    "Everything else (SGD lr 0.025 cosine to 0.001, momentum 0.9, weight decay 5e-4, clip 5; Adam betas "
    "(0.5, 0.999); batch 64; no augmentation) is the paper's."
)
PRESET_NOTES = {
    "cpu-demo": (
        "cpu-demo preset: sized to finish in about 5 minutes on 2 CPU cores, so it differs from the paper's "
        "NAS-Bench-201 setting: MNIST-5k (2,500 images for weights, 2,500 for alpha) at 14x14 instead of "
        "CIFAR-10 at 32x32; supernet C=4, N=1 instead of C=16, N=5; 6 epochs (234 architecture steps) instead "
        "of 50; alpha Adam lr 0.1 instead of 3e-4, because 3e-4 cannot move alpha far from uniform in a few "
        "hundred steps. Everything else (iDARTS with T=1, K=2; SGD lr 0.025 cosine to 0.001, "
        "momentum 0.9, weight decay 5e-4, clip 5; Adam betas (0.5, 0.999), alpha weight decay 1e-3; "
        "batch 64) is the paper's."
    ),
    "cifar-demo": (
        "cifar-demo preset (what make search runs): the cifar-cpu search on the real CIFAR-10 images shipped with "
        "the package (10,000 training images, 1,000 per class, stored at 16x16; 5,000 for weights, 5,000 for alpha), "
        "so it needs no --data-dir and downloads nothing. " + _CIFAR_CPU_DIFFERENCES
    ),
    "cifar-cpu": (
        "cifar-cpu preset: a search on real CIFAR-10 sized for 2 CPU cores (about 10 minutes on an idle core), "
        "10,000 training images (5,000 for weights, 5,000 for alpha) at 16x16 instead of 50,000 at 32x32. "
        + _CIFAR_CPU_DIFFERENCES + " Needs --data-dir DATA holding cifar-10-batches-py/ (docs/nas.md says how to get it)."
    ),
    "cifar-cpu-idarts": (
        "cifar-cpu-idarts preset: the cifar-cpu search as it was before the stabilisers (the baseline of docs/nas.md): "
        "iDARTS (T=1, K=2, gamma = weight lr), argmax derivation, 10,000 CIFAR-10 images at 16x16, C=8, N=1, "
        "10 epochs, alpha Adam lr 0.1 without weight decay; the rest is the paper's. Needs --data-dir DATA."
    ),
}

_CONFIG_FIELDS = {f.name for f in fields(SearchConfig)}


def build_parser() -> argparse.ArgumentParser:
    defaults = SearchConfig()
    parser = ArgumentParser(
        prog="python -m applications.nas.search",
        description="Differentiable architecture search (DARTS / iDARTS / implicit CG) in the NAS-Bench-201 "
        "or the DARTS space, on the core hypergrad library. Defaults are the NAS-Bench-201 paper hyperparameters (on the "
        "bundled mnist5k unless --dataset says otherwise); --preset cifar-demo sizes a search on the bundled CIFAR-10 "
        "images for a laptop CPU.",
    )
    # Options default to None so that a preset fills what the user did not set.
    parser.set_defaults(**{name: None for name in _CONFIG_FIELDS})
    run = parser.add_argument_group("run")
    run.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                     help="starting values for the options below, overridden by any given explicitly: paper = "
                          "the NAS-Bench-201/iDARTS hyperparameters shown in brackets; cifar-cpu = darts-1st with "
                          "beta-decay 50 and the cell chosen by perturbation (pt, near ties to the convolutions) on "
                          "CIFAR-10 (needs --data-dir) at 16x16, 10,000 images, C=8, N=1, 10 epochs, alpha lr 0.1, "
                          "alpha weight decay 0; cifar-demo (what make search runs) = cifar-cpu on the CIFAR-10 "
                          "subset shipped with the package (no --data-dir); "
                          "cifar-cpu-idarts = the earlier cifar-cpu (idarts, argmax); cpu-demo = idarts on mnist5k at "
                          "14x14, C=4, N=1, 6 epochs, alpha lr 0.1 [paper]")
    run.add_argument("--space", choices=list(SPACES),
                     help=f"search space: nb201 (NAS-Bench-201 cell, table lookup) or darts (DARTS normal and "
                          f"reduction cells; --layers sets its depth) [{defaults.space}]")
    run.add_argument("--method", choices=METHODS,
                     help=f"hypergradient: darts-1st (first order), darts-2nd (one-step unrolled, finite "
                          f"differences), idarts (stochastic Neumann), implicit-cg (conjugate gradient), implicit-minres "
                          f"(MINRES: the same system without assuming a positive-definite Hessian), fixed-alpha (weights "
                          f"only, alpha left near uniform: DARTS-PT's fix-alpha, use with --selection pt), random-ws "
                          f"(baseline: random search with weight sharing, no alpha) [{defaults.method}]")
    run.add_argument("--epochs", type=positive_int, help=f"search epochs [{defaults.epochs}]")
    run.add_argument("--seed", type=nonnegative_int, help=f"seed of initialisation, split and batch order [{defaults.seed}]")
    run.add_argument("--out", type=output_dir, help="output folder (required unless --resume)")
    run.add_argument("--resume", type=existing_output_dir, metavar="DIR",
                     help="continue the interrupted search in DIR with the settings stored in its checkpoint "
                          "(search options given here are ignored; derivation and table options apply). The same "
                          "command with --out DIR continues by itself when DIR holds this search's checkpoint")
    run.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                     help="also write the checkpoint every N steps within an epoch, so that an interruption loses "
                          "at most N steps (0: at the end of each epoch only) [0]")
    run.add_argument("--device", type=torch_device,
                     help=f"torch device; under torchrun each process takes cuda:LOCAL_RANK for cuda; with --resume, "
                          f"the device to continue on (the checkpoint's otherwise) [{defaults.device}]")
    run.add_argument("--tf32", action=argparse.BooleanOptionalAction,
                     help="TF32 matrix products and convolutions on GPUs; off by default because TF32 moves the "
                          "architecture gradient by ~15%% (docs/nas.md, GPU) [off]")
    run.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                     help="deterministic GPU kernels (cuDNN, cuBLAS and the rest; no cuDNN autotuning), so that a "
                          "GPU search repeats bit for bit and resumes exactly [off]")
    run.add_argument("--threads", type=positive_int, default=1,
                     help="CPU threads for torch [1]: the supernet's small convolutions gain little from more, "
                          "and on a busy machine spinning intra-op threads slowed steps 5x in our measurements")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, help=f"training images [{defaults.dataset}]")
    data.add_argument("--data-dir", type=existing_dir_text, help="folder holding cifar-10-batches-py/ or cifar-100-python/")
    data.add_argument("--image-size", type=positive_int, help="resize images to this side (e.g. 14 for MNIST)")
    data.add_argument("--train-subset", type=positive_int,
                      help="use this many training images (seeded choice), split in halves for w and alpha")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction,
                      help="random crop and flip on the batches of both halves, the weights' and alpha's [off]")

    net = parser.add_argument_group("supernet")
    net.add_argument("--channels", type=positive_int, help=f"C, width of the first stage [{defaults.channels}]")
    net.add_argument("--cells-per-stage", type=positive_int,
                     help=f"N, cells per stage (nb201 only) [{defaults.cells_per_stage}]")
    net.add_argument("--layers", type=positive_int,
                     help=f"L, cells of the DARTS supernet, at least 3 (darts only) [{defaults.layers}]")
    net.add_argument("--bn-sync", action=argparse.BooleanOptionalAction,
                     help="under torchrun, BatchNorm statistics of the global batch (one all-reduce per BatchNorm "
                          "and pass), so that P processes search as one does; --no-bn-sync: each process its own "
                          "slice's statistics [on]")
    net.add_argument("--track-bn-stats", action=argparse.BooleanOptionalAction,
                     help="BatchNorm tracks running statistics for evaluation [off; see docs/nas.md]")

    weights = parser.add_argument_group("weights (SGD, Nesterov, cosine schedule per epoch)")
    weights.add_argument("--batch-size", type=positive_int, help=f"mini-batch size [{defaults.batch_size}]")
    weights.add_argument("--w-lr", type=positive_float, help=f"initial learning rate [{defaults.w_lr}]")
    weights.add_argument("--w-lr-min", type=nonnegative_float, help=f"final learning rate [{defaults.w_lr_min}]")
    weights.add_argument("--w-momentum", type=nonnegative_float, help=f"momentum [{defaults.w_momentum}]")
    weights.add_argument("--w-weight-decay", type=nonnegative_float, help=f"weight decay [{defaults.w_weight_decay}]")
    weights.add_argument("--grad-clip", type=positive_float, help=f"gradient norm clip [{defaults.grad_clip}]")

    arch = parser.add_argument_group("architecture weights alpha (Adam)")
    arch.add_argument("--alpha-lr", type=positive_float, help=f"learning rate [{defaults.alpha_lr}]")
    arch.add_argument("--alpha-lr-schedule", choices=ALPHA_LR_SCHEDULES,
                      help=f"alpha learning rate per epoch: constant, or cosine from --alpha-lr towards 0 "
                           f"[{defaults.alpha_lr_schedule}]")
    arch.add_argument("--alpha-beta1", type=nonnegative_float, help=f"Adam beta1 [{defaults.alpha_beta1}]")
    arch.add_argument("--alpha-beta2", type=nonnegative_float, help=f"Adam beta2 [{defaults.alpha_beta2}]")
    arch.add_argument("--alpha-weight-decay", type=nonnegative_float,
                      help=f"weight decay [{defaults.alpha_weight_decay}]")
    arch.add_argument("--inner-steps", type=positive_int,
                      help=f"T, weight steps per architecture step [{defaults.inner_steps}]")
    arch.add_argument("--warmup-epochs", type=nonnegative_int,
                      help=f"epochs of weight steps only before alpha starts to move [{defaults.warmup_epochs}]")
    arch.add_argument("--rsws-candidates", type=positive_int,
                      help=f"random-ws: random cells scored with the shared weights at the end [{defaults.rsws_candidates}]")
    arch.add_argument("--neumann-terms", type=nonnegative_int,
                      help=f"K, Hessian terms of the idarts series, each on a fresh batch [{defaults.neumann_terms}]")
    arch.add_argument("--share-batch", action=argparse.BooleanOptionalAction,
                      help="idarts: the mixed product on the last Hessian term's batch, reusing its graph (one graph "
                           "build fewer per step; the two factors are then correlated) [off]")
    arch.add_argument("--solver-max-iter", type=positive_int,
                      help=f"implicit-cg / implicit-minres iterations [{defaults.solver_max_iter}]")
    arch.add_argument("--solver-tol", type=nonnegative_float,
                      help=f"implicit-cg / implicit-minres relative tolerance [{defaults.solver_tol}]")
    arch.add_argument("--solver-damping", type=nonnegative_float,
                      help=f"implicit-cg / implicit-minres damping delta in (H + delta I) v = dF/dw [{defaults.solver_damping}]")

    stabilise = parser.add_argument_group(
        "stabilisers (compose with every gradient method; see docs/nas.md)")
    stabilise.add_argument("--beta-decay", type=nonnegative_float, metavar="LAMBDA",
                           help="beta-DARTS: add lambda(t) * mean over edges of logsumexp(alpha_e) to the outer loss, "
                                "lambda ramped linearly from 0 towards LAMBDA over the epochs (beta-DARTS: 50) "
                                f"[{defaults.beta_decay}: off]")
    stabilise.add_argument("--dirichlet", action=argparse.BooleanOptionalAction,
                           help="DrNAS: mixing weights sampled from Dir(elu(alpha)+1) by the pathwise gradient, one "
                                "sample held within each hypergradient [off: softmax(alpha)]")
    stabilise.add_argument("--dirichlet-kl", type=nonnegative_float,
                           help="with --dirichlet: weight of KL(Dir(elu(alpha)+1) || Dir(1)) in the outer loss "
                                f"[{defaults.dirichlet_kl}]")
    stabilise.add_argument("--selection", choices=SELECTIONS,
                           help="how the final cell is chosen: argmax of alpha per edge, or pt (DARTS-PT: per edge, the "
                                "operation whose removal costs the trained supernet the most validation accuracy, "
                                "fine-tuning between edges; the argmax cell is reported too) [argmax]")
    stabilise.add_argument("--pt-tune-steps", type=nonnegative_int,
                           help="with --selection pt: weight steps of fine-tuning after each decided edge "
                                f"[{defaults.pt_tune_steps}]")

    stabilise.add_argument("--pt-val-images", type=_images_or_all,
                           help="with --selection pt: score each masked supernet on the first N validation images "
                                "(the same N for every mask), or 'all' [all]")
    stabilise.add_argument("--pt-max-param-free", type=nonnegative_int, metavar="K",
                           help="with --selection pt: at most K edges of the cell take a parameter-free operation "
                                "(none, skip_connect, avg_pool_3x3); once K decided edges hold one, later edges "
                                "choose among the convolutions [no limit]")
    stabilise.add_argument("--pt-ties", choices=PT_TIES,
                           help="with --selection pt: how a near tie is decided (operations whose drops lie within two "
                                "paired standard errors of the largest): drop = the largest drop; parametric = the "
                                "convolution with the largest drop, where the tie holds one [drop]")
    stabilise.add_argument("--reselect", type=existing_dir, metavar="DIR",
                           help="choose the cell again from the finished search in DIR (its final checkpoint), with "
                                "the --selection and --pt-* options given here, into --out (DIR is not changed); the "
                                "search's other settings are DIR's")

    result = parser.add_argument_group("derivation and benchmark")
    result.add_argument("--exclude-none", action="store_true",
                        help="derive the cell without the `none` operation (argmax over the other four; "
                             "the darts derivation always leaves none out)")
    result.add_argument("--nb201-table", type=existing_file,
                        help="NAS-Bench-201 accuracy CSV (plain or gzipped) to look the derived cell up in "
                             "[the table of all 15,625 cells shipped with the package]")
    result.add_argument("--no-table", action="store_true", help="skip the benchmark lookup")
    result.add_argument("--nats-file", type=existing_file,
                        help="official NATS-Bench topology benchmark file, used when the nats_bench package "
                             "is installed (preferred over the CSV table)")
    return parser


# What --reselect may change of a finished search: how the cell is chosen from its supernet.
_SELECTION_FIELDS = ("selection", "pt_tune_steps", "pt_val_images", "pt_max_param_free", "pt_ties")


def _images_or_all(text: str) -> int | str:
    """argparse type of --pt-val-images: a positive integer, or ``all``."""
    return "all" if text == "all" else positive_int(text)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The search settings: the preset's values, overridden by every option given on the command line."""
    values = dict(PRESETS[args.preset])
    values.update({name: getattr(args, name) for name in _CONFIG_FIELDS if getattr(args, name) is not None})
    if values.get("pt_val_images") == "all":
        values["pt_val_images"] = None
    space = values.get("space", SearchConfig.space)
    # An option of the other space would be silently ignored; say so instead.
    for option, name, owner in (("--cells-per-stage", "cells_per_stage", "nb201"), ("--layers", "layers", "darts")):
        if getattr(args, name) is not None and space != owner:
            raise SearchConfigError(f"{option} applies to --space {owner}, not {space}")
    return SearchConfig(**values)


def _holds_this_search(out: Path, config: SearchConfig) -> bool:
    """Whether ``out`` holds a checkpoint of the search ``config`` describes (on any device), which the
    search then continues: how a job that ``torchrun --max-restarts`` restarts picks up where it stopped."""
    if not (out / CHECKPOINT).is_file():
        return False
    stored = SearchConfig.from_dict(load_checkpoint(out)["config"])
    same = replace(stored, device=config.device) == config
    if same:
        print(f"note: {out / CHECKPOINT} holds this search; continuing from it", file=sys.stderr)
    else:
        print(f"note: {out / CHECKPOINT} holds another search (other settings); starting afresh over it",
              file=sys.stderr)
    return same


def summarise(config: SearchConfig, state: SearchState, exclude_none: bool, table: BenchmarkTable | None,
              nats_file: Path | None) -> dict[str, Any]:
    """The content of ``result.json``: derived cells, α, timing, and the benchmark's figures."""
    space = config.search_space
    perturbed = None
    if state.selected is not None:  # random-ws chose a cell by its shared-weight validation accuracy
        with_none = without_none = chosen = space.parse(state.selected["arch"])
    else:
        with_none = space.derive(state.alphas, False)
        without_none = space.derive(state.alphas, True)
        chosen = without_none if exclude_none else with_none
        if state.perturbation is not None:
            chosen = perturbed = space.parse(state.perturbation["arch"])
    last = state.history[-1]
    result: dict[str, Any] = {
        "space": space.name,
        "arch": str(chosen),
        "derivation": ("best of random cells by shared-weight validation accuracy" if state.selected is not None
                       else "perturbation (DARTS-PT)" if perturbed is not None else space.derivation(exclude_none)),
        "connected": chosen.is_connected(),
        "arch_argmax": str(with_none),
        "arch_argmax_without_none": str(without_none),
        "method": config.method,
        "seed": config.seed,
        "epochs": config.epochs,
        "alpha": alpha_to_json(state.alphas),
        "alpha_softmax": alpha_to_json(alpha_probabilities(state.alphas)),
        "decisive_edges": None if state.selected is not None else decisive_edges(state.alphas),
        "edges": num_edges(state.alphas),
        "wall_time_s": state.wall_time,
        "seconds_per_epoch": state.wall_time / max(1, state.epochs_done),
        "seconds_per_step": sum(r["seconds_per_step"] for r in state.history) / len(state.history),
        "final_train_acc": last["train_acc"],
        "final_val_acc": last["val_acc"],
        "nonfinite_steps": state.nonfinite_steps,
        "config": asdict(config),
    }
    if state.selected is not None:
        result["random_ws"] = state.selected
    if state.perturbation is not None:
        result["arch_pt"] = state.perturbation["arch"]
        result["perturbation"] = state.perturbation
    if table is not None or nats_file is not None:
        # Only NAS-Bench-201 has a table; main passes none for another space.
        assert isinstance(chosen, Cell) and isinstance(with_none, Cell) and isinstance(without_none, Cell)
        result["benchmark"] = {
            "arch": describe_cell(chosen, table, nats_file),
            "arch_argmax": describe_cell(with_none, table, nats_file),
            "arch_argmax_without_none": describe_cell(without_none, table, nats_file),
        }
        if perturbed is not None:
            assert isinstance(perturbed, Cell)
            result["benchmark"]["arch_pt"] = describe_cell(perturbed, table, nats_file)
    return result


def _open_table(args: argparse.Namespace) -> BenchmarkTable | None:
    if args.no_table:
        return None
    if args.nb201_table is not None:
        return BenchmarkTable.from_csv(args.nb201_table)
    return shipped_table()


def _edge_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """The NAS-Bench-201 edges (``from->to``) of perturbation records."""
    return ["{1}->{0}".format(*EDGES[r["edge"]]) for r in records]


def _report(result: dict[str, Any], config: SearchConfig, state: SearchState, out: Path, note: str | None) -> str:
    space = config.search_space
    lines = []
    if note:
        lines += [note, ""]
    lines.append(f"derived cell ({result['derivation']}): {result['arch']}")
    if not result["connected"]:
        lines.append("  WARNING: this cell is disconnected: no path of non-none edges from input to output; "
                     "NAS-Bench-201 scores such cells at chance (10% on CIFAR-10).")
    if "arch_pt" in result:
        pt = result["perturbation"]
        lines.append(f"argmax of alpha:        {result['arch_argmax']}")
        lines.append(f"  (perturbation: supernet validation accuracy {pt['val_acc']:.3f} with the chosen cell's operations; "
                     f"edges decided in the order {pt['order']}, {pt['tune_steps']} fine-tuning steps after each)")
        if "clear_edges" in pt:
            ties = _edge_names(r for r in pt["edges"] if not clear_decisions([r]))
            lines.append(f"  ({pt['clear_edges']} of {len(pt['edges'])} edges decided by more than twice the standard error "
                         "of their margin over the runner-up" + (f"; near ties on {', '.join(ties)}, which another seed "
                                                                  "or edge order may decide otherwise)" if ties else ")"))
        if pt.get("ties") == "parametric":
            turned = _edge_names(r for r in pt["edges"] if r.get("tie_broken"))
            lines.append("  (near ties go to the convolutions: " + (
                f"edge{'s' if len(turned) > 1 else ''} {', '.join(turned)} took a convolution within two errors of "
                "the largest drop)" if turned else "no edge had a convolution tied with a parameter-free best)"))
        if pt.get("max_param_free") is not None:
            turned = _edge_names(r for r in pt["edges"] if r.get("capped"))
            lines.append(f"  (at most {pt['max_param_free']} parameter-free edges: "
                         + (f"the cap turned edge{'s' if len(turned) > 1 else ''} {', '.join(turned)} to a convolution)"
                            if turned else "the cap never bound)"))
    if result["arch_argmax_without_none"] != result["arch"]:
        lines.append(f"without none:           {result['arch_argmax_without_none']}")
    if state.selected is not None:
        chosen = state.selected
        lines += ["", f"random search with weight sharing: best of {chosen['distinct_cells']} distinct random cells by "
                      f"validation accuracy on the shared weights: {chosen['val_acc']:.3f} (median candidate "
                      f"{chosen['median_candidate_val_acc']:.3f}); {result['seconds_per_epoch']:.1f} s/epoch"]
    else:
        lines += ["", "softmax(alpha) per edge (* = largest):",
                  format_alpha_tables(space, state.alphas), "",
                  f"decisive edges (max probability >= 0.5): {result['decisive_edges']} of {result['edges']}; "
                  f"supernet accuracy train {result['final_train_acc']:.3f}, validation {result['final_val_acc']:.3f}; "
                  f"{result['seconds_per_epoch']:.1f} s/epoch"]
    benchmark = result.get("benchmark")
    if benchmark:
        for key, label in (("arch", "derived cell"), ("arch_argmax", "argmax cell"),
                           ("arch_argmax_without_none", "cell without none")):
            entry = benchmark[key]
            if key != "arch" and result[key] in (result["arch"], *(result[k] for k in ("arch_argmax",) if k != key)):
                continue
            if entry is None:
                lines.append(f"NAS-Bench-201 ({label}): not in the table")
            else:
                lines.append(f"NAS-Bench-201 ({label}, index {entry['index']}): test accuracy CIFAR-10 "
                             f"{entry['cifar10_test']:.2f}, CIFAR-100 {entry['cifar100_test']:.2f}, "
                             f"ImageNet16-120 {entry['imagenet16_120_test']:.2f} (%)")
                if "percentile" in entry:
                    pct = entry["percentile"]
                    lines.append(f"  percentile among all {entry['cells_in_table']:,} cells: CIFAR-10 "
                                 f"{pct['cifar10_test']:.1f}, CIFAR-100 {pct['cifar100_test']:.1f}, ImageNet16-120 "
                                 f"{pct['imagenet16_120_test']:.1f} (50 = the median cell, what a random pick "
                                 "scores on average; " + ("above" if pct["cifar10_test"] > 50 else "NOT above")
                                 + " a random pick on CIFAR-10)")
    if space is not NB201:
        lines.append(f"No benchmark table exists for the {space.title}: judge the genotype by retraining it. "
                     f"{result['edges'] - result['decisive_edges']} of {result['edges']} edges ended with no "
                     "operation above 0.5: those choices are close to noise.")
    elif config.dataset != "cifar10" or config.channels != 16 or config.cells_per_stage != 5:
        if config.dataset not in ("cifar10", "cifar10-bundled"):
            meaning = ("they rate the cell, not the search, and a small proxy search like this one is not evidence "
                       "of what the method finds on CIFAR-10.")
        else:
            bundled = config.dataset == "cifar10-bundled"
            side = config.image_size or (BUNDLED_CIFAR10_SIZE if bundled else 32)
            meaning = (f"the search itself saw CIFAR-10 at {side}x{side} ({config.train_subset or 'all the'}"
                       f"{' bundled' if bundled else ''} training images), a smaller setting than the "
                       "benchmark trains cells in.")
        noise = ("" if result["decisive_edges"] is None else
                 f" {6 - result['decisive_edges']} of 6 edges ended with no operation above 0.5: those choices "
                 "are close to noise.")
        lines.append(
            f"What this means: the cell was chosen by a {config.dataset} search with a C={config.channels}, "
            f"N={config.cells_per_stage} supernet for {config.epochs} epochs. The NAS-Bench-201 figures are "
            f"what that cell scores when trained at full size on CIFAR/ImageNet16; {meaning}{noise} "
            "Compare several seeds before reading much into one cell."
        )
    lines += ["", f"results: {out / 'result.json'}", f"per-epoch log: {out / 'log.jsonl'}"]
    if space is NB201:
        lines += [f"alpha over epochs: {out / 'alpha.png'}", f"derived cell: {out / 'cell.png'}"]
    else:
        lines.append("(no alpha.png or cell.png: the figures are drawn for the NAS-Bench-201 cell only)")
    return "\n".join(lines)


def _option_text(name: str, value: Any) -> str:
    """A selection option and its value as the command line writes them (``None``: all images, or no cap)."""
    if value is None:
        return "--pt-val-images all" if name == "pt_val_images" else f"no --{name.replace('_', '-')}"
    return f"--{name.replace('_', '-')} {value}"


def _prepare_reselection(args: argparse.Namespace) -> SearchConfig:
    """``--reselect SOURCE --out OUT``: OUT gets SOURCE's final checkpoint and log with the selection options
    given on the command line, so that resuming it runs no search step, only the selection."""
    source, out = args.reselect, args.out
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the --reselect folder; expected another folder (DIR is not changed)")
    other = sorted(f"--{name.replace('_', '-')}" for name in _CONFIG_FIELDS
                   if getattr(args, name) is not None and name not in (*_SELECTION_FIELDS, "device"))
    if other:
        raise ValueError(f"{', '.join(other)} cannot change a finished search; with --reselect, expected only "
                         "--selection, --pt-tune-steps, --pt-val-images, --pt-max-param-free, --pt-ties and --device")
    checkpoint = load_checkpoint(source)
    stored = checkpoint["config"]
    if checkpoint["epochs_done"] != stored["epochs"]:
        raise ValueError(f"{source / CHECKPOINT} holds a search stopped after epoch {checkpoint['epochs_done']} of "
                         f"{stored['epochs']}; expected a finished search (continue it with --resume {source})")
    changes = {name: getattr(args, name) for name in (*_SELECTION_FIELDS, "device") if getattr(args, name) is not None}
    if changes.get("pt_val_images") == "all":
        changes["pt_val_images"] = None
    config = replace(SearchConfig.from_dict(stored), **changes)  # checked like any config
    if config.selection == "pt":
        # A re-derivation keeps the search's own selection options where none is given: say which, since an
        # older search's (e.g. PT on 1,000 images) is easy to carry over unnoticed.
        kept = [_option_text(name, getattr(config, name)) for name in _SELECTION_FIELDS
                if name != "selection" and name not in changes]
        if kept:
            print(f"note: --reselect keeps {source}'s own {', '.join(kept)}", file=sys.stderr)
    checkpoint["config"] = asdict(config)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / CHECKPOINT, functools.partial(torch.save, checkpoint))
    atomic_write_text(out / LOG, (source / LOG).read_text())
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None and args.out is None:
        parser.error("--out DIR is required (or --resume DIR)")
    if args.reselect is not None and args.resume is not None:
        parser.error("--reselect and --resume exclude each other: --reselect DIR --out OUT chooses again from a "
                     "finished search")
    resume = args.resume is not None
    if args.reselect is not None:
        out = args.out
        config = _prepare_reselection(args)
        resume = True
    elif resume:
        out = args.resume
        config = SearchConfig.from_dict(load_checkpoint(out)["config"])
        if args.device is not None:  # the given device overrides the checkpoint's
            config = replace(config, device=args.device)
    else:
        out = args.out
        config = config_from_args(args)
        resume = _holds_this_search(out, config)
    if args.nats_file is not None and not args.nats_file.exists():
        raise FileNotFoundError(f"--nats-file {args.nats_file} not found")
    torch.set_num_threads(args.threads)
    table: BenchmarkTable | None = None
    nats_file: Path | None = None
    if config.search_space is NB201:
        table = _open_table(args)  # read before searching, so a bad table fails in seconds, not after the search
        nats_file = args.nats_file
    elif args.nb201_table is not None or args.nats_file is not None:
        print(f"note: no benchmark lookup: NAS-Bench-201 holds no {config.search_space.title}", file=sys.stderr)
    note = PRESET_NOTES.get(args.preset) if not resume else None
    if note:
        preset = PRESETS[args.preset]
        changed = [f"{name}={getattr(config, name)}" for name in sorted(preset) if getattr(config, name) != preset[name]]
        if changed:
            note += f" Changed on the command line from the preset: {', '.join(changed)}."
    if note:
        print(note, file=sys.stderr)
    # Before CUDA initialises (which joining a torchrun job does): deterministic cuBLAS needs that order.
    configure_backend(config.device, tf32=config.tf32, deterministic=config.deterministic)
    parallel = DataParallel.from_environment(config.device)  # under torchrun: this process's part
    try:
        with stop_on_sigterm():  # torchrun's signal to the other processes when one fails
            state = run_search(config, out, resume=resume, progress=not args.no_progress, parallel=parallel,
                               device=config.device, checkpoint_every=args.checkpoint_every)
    except SearchInterrupted as err:
        print(f"python -m applications.nas.search: {err}", file=sys.stderr)
        return 1
    if not parallel.is_writer:
        return 0
    result = summarise(config, state, args.exclude_none, table, nats_file)
    result["backend"] = backend_settings(parallel.device(config.device))
    figures = ("alpha.png", "cell.png") if config.search_space is NB201 else ()
    result["files"] = {name: str(out / name) for name in ("log.jsonl", *figures, "checkpoint.pt")}
    atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    if figures:
        title = f"{config.method}, seed {config.seed}, {config.dataset}, {config.epochs} epochs"
        plot_alpha_history(state.history, edge_probabilities(state.initial_alphas[ALPHA_NAME]).tolist(),
                           out / "alpha.png", title=f"softmax(alpha) per edge: {title}")
        draw_cell(Cell.parse(result["arch"]), out / "cell.png", title=f"derived cell: {title}")
    print(_report(result, config, state, out, note))
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``main`` with one-line errors (exit status 2) for bad input."""
    return run_cli(main, argv, "python -m applications.nas.search",
                   (DataError, TableError, SearchConfigError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(cli())
