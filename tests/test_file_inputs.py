"""Every file reader refuses a bad file the same way: exit status 2 (or one exception line for a reader
without a command), at most three lines naming the file and what was expected, no traceback, nothing
written.

The cases are generated per reader: three that every format can suffer (an empty file, a truncated copy
of a valid file, a folder in place of the file) and the reader's own (wrong types, wrong shapes,
non-finite values). Each reader starts from a valid file and the command that reads it, so a new
reader is covered by one entry in READERS. (Crafted files that would run code: tests/test_checkpoints.py.)
"""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from applications import checkpoints
from applications.checkpoints import CheckpointError
from applications.hpo import compare as hpo_compare
from applications.hpo import data as hpo_data
from applications.hpo import run as hpo_run
from applications.hpo.ijcnn1 import problem as ijcnn1_problem
from applications.hpo.results import load_best_hparams
from applications.nas.benchmark import table as nb201_table
from applications.nas.commands import lookup, report, search, train
from applications.nas.common import data as nas_data
from applications.nas.searching.config import SearchConfig

pytestmark = pytest.mark.float32

GOOD_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), "
            "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
            "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])")
NAN = float("nan")


def _torch_bytes(content: object) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def _search_checkpoint(**changes: Any) -> bytes:
    config = SearchConfig(dataset="digits", channels=2, cells_per_stage=1, epochs=1, train_subset=200, batch_size=32)
    payload = {"config": asdict(config), "model": {}, "w_opt": {}, "a_opt": {}, "streams": {},
               "path_generator": torch.Generator().get_state(), "rng": checkpoints.rng_state(),
               "initial_alphas": {}, "history": [], "nonfinite_steps": [], "wall_time": 0.0, "epochs_done": 0,
               "dirichlet_generator": None}
    return _torch_bytes(checkpoints.pack("nas-search", 3, {**payload, **changes}))


def _train_checkpoint(**changes: Any) -> bytes:
    settings = {"arch": GOOD_ARCH, "kind": "nb201", "channels": 2, "cells_per_stage": 1, "epochs": 1, "batch_size": 32,
                "lr": 0.1, "weight_decay": 5e-4, "auxiliary_weight": 0.0, "drop_path": 0.0, "cutout": 0,
                "grad_clip": 5.0, "augment": False, "dataset": "digits", "data_dir": None, "image_size": None,
                "train_subset": 200, "val_fraction": 0.0, "seed": 0, "device": "cpu"}
    payload = {"settings": settings, "model": {}, "optimizer": {}, "stream": {}, "cutout": torch.Generator().get_state(),
               "epochs_done": 0, "seconds": 0.0, "rng": checkpoints.rng_state()}
    return _torch_bytes(checkpoints.pack("nas-train", 2, {**payload, **changes}))


def _best_hparams(hparams: object) -> bytes:
    return _torch_bytes(checkpoints.pack("hpo-best-hparams", 1, {"hparams": hparams}))


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _search_result(**changes: Any) -> bytes:
    return _json({"arch": GOOD_ARCH, "method": "idarts", "seed": 0, "connected": True, "seconds_per_step": 0.1,
                  **changes})


def _hpo_result(**changes: Any) -> bytes:
    return _json({"task": "logreg-l2", "dataset": "digits", "method": "random", "seed": 0, "budget_seconds": 1.0,
                  "history": [{"time": 0.5, "val_loss": 0.3, "test_loss": 0.3, "test_accuracy": 0.9}], "best": None,
                  **changes})


def _cifar(data: object = None, labels: object = None) -> bytes:
    data = np.zeros((2, 3072), np.uint8) if data is None else data
    return pickle.dumps({b"data": data, b"labels": [0, 1] if labels is None else labels}, protocol=2)


def _table(*rows: str, header: str = "index,arch,cifar10_valid,cifar10_test,cifar100_test,imagenet16_120_test") -> bytes:
    return "\n".join([header, *rows]).encode() + b"\n"


def _mnist(text: str) -> bytes:
    return gzip.compress(text.encode())


_PIXELS = ",".join(["0"] * 784)
_LIBSVM = b"1 1:0.5 2:0.25\n-1 1:0.125 2:0.75\n"  # its first half ends in a bare "-": a truncated file fails to parse


@dataclass(frozen=True)
class Reader:
    """A file format, the path of the file under test, a valid file, the reader's own bad files, and how it is read."""

    name: str
    path: str  # under the test's temporary folder
    good: Callable[[], bytes]
    bad: dict[str, Callable[[], bytes]]
    command: Any = None  # a module with cli(argv); None: read by ``read`` and expect its exception
    argv: Callable[[Path], list[str]] = lambda d: []
    read: Callable[[Path], object] | None = None
    error: type[Exception] = ValueError
    setup: Callable[[Path, pytest.MonkeyPatch], None] = lambda d, m: None
    extra: dict[str, bytes] = field(default_factory=dict)  # valid files beside the one under test


def _cifar_setup(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        (d / "data" / "cifar-10-batches-py" / name).write_bytes(_cifar())


def _ship(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` the shipped table, as if the package held it. The cache of the real one is emptied: a bad
    table raises, so nothing of it is cached, and the next reader reads the real one again."""
    monkeypatch.setattr(nb201_table, "DEFAULT_TABLE", path)
    nb201_table.shipped_table.cache_clear()


READERS = [
    Reader("search checkpoint", "run/checkpoint.pt", _search_checkpoint, {
        "wrong types": lambda: _search_checkpoint(history="epochs"),
        "wrong shapes": lambda: _search_checkpoint(model={"cells.0.weight": torch.zeros(3)}),
        "non-finite": lambda: _search_checkpoint(model={"alpha": torch.tensor([NAN])}),
        "non-finite wall time": lambda: _search_checkpoint(wall_time=NAN),
        "another kind": lambda: _train_checkpoint(),
    }, search, lambda d: ["--resume", str(d / "run"), "--no-progress", "--no-table"]),
    Reader("training checkpoint", "run/checkpoint.pt", _train_checkpoint, {
        "wrong types": lambda: _train_checkpoint(epochs_done="1"),
        "wrong shapes": lambda: _train_checkpoint(model={"stem.0.weight": torch.zeros(3)}),
        "non-finite": lambda: _train_checkpoint(model={"stem.0.weight": torch.tensor([float("inf")])}),
        "bad cell": lambda: _train_checkpoint(settings={"arch": "|bogus~0|"}),
    }, train, lambda d: ["--resume", str(d / "run"), "--no-progress"]),
    Reader("HPO best_hparams", "run/best_hparams.pt", lambda: _best_hparams({"log_l2": torch.zeros(3)}), {
        "wrong types": lambda: _best_hparams([1.0, 2.0]),
        "wrong shapes": lambda: _best_hparams({}),
        "non-finite": lambda: _best_hparams({"log_l2": torch.tensor([NAN])}),
        "not a dict": lambda: _torch_bytes([torch.zeros(2)]),
    }, read=load_best_hparams, error=CheckpointError),
    Reader("NAS result.json (train --result)", "run/result.json", _search_result, {
        "wrong types": lambda: _search_result(arch=5),
        "a list": lambda: _json([GOOD_ARCH]),
        "truncated cell": lambda: _search_result(arch="|nor_conv_3x3~0|+|"),
        "truncated genotype": lambda: _search_result(arch=GENOTYPE[:80]),
        "genotype of wrong types": lambda: _search_result(arch="Genotype(normal=5, normal_concat=[], reduce=[], "
                                                               "reduce_concat=[])"),
        "non-finite": lambda: b'{"arch": NaN}',
    }, train, lambda d: ["--result", str(d / "run" / "result.json"), "--out", str(d / "out")]),
    Reader("NAS result.json (report)", "run/result.json", _search_result, {
        "wrong types": lambda: _search_result(seed="zero"),
        "wrong shapes": lambda: _json({"arch": GOOD_ARCH}),
        "non-finite": lambda: _search_result(seconds_per_step=NAN),
    }, report, lambda d: [str(d / "run" / "result.json")]),
    Reader("HPO result.json (compare)", "runs/a/result.json", _hpo_result, {
        "wrong types": lambda: _hpo_result(seed="zero"),
        "wrong shapes": lambda: _hpo_result(history=[{"time": 1.0}]),
        "non-finite": lambda: _hpo_result(budget_seconds=NAN),
    }, hpo_compare, lambda d: [str(d / "runs"), "--out", str(d / "chart.png")]),
    Reader("NAS-Bench-201 table (given)", "nb201.csv", lambda: _table(f"0,{GOOD_ARCH},90,91,70,40"), {
        "wrong types": lambda: _table(f"0,{GOOD_ARCH},90,x,70,40"),
        "wrong shapes": lambda: _table(f"0,{GOOD_ARCH},90", header="index,arch,cifar10_valid"),
        "short row": lambda: _table(f"0,{GOOD_ARCH},90"),
        "non-finite": lambda: _table(f"0,{GOOD_ARCH},nan,91,70,40"),
        "out of range": lambda: _table(f"0,{GOOD_ARCH},90,191,70,40"),
        "gzip truncated": lambda: gzip.compress(_table(f"0,{GOOD_ARCH},90,91,70,40"))[:-8],
    }, lookup, lambda d: ["--table", str(d / "nb201.csv"), "--arch", GOOD_ARCH]),
    Reader("NAS-Bench-201 table (shipped)", "shipped/nb201_accuracy.csv.gz",
           lambda: gzip.compress(_table(f"0,{GOOD_ARCH},90,91,70,40")), {
               "non-finite": lambda: gzip.compress(_table(f"0,{GOOD_ARCH},inf,91,70,40")),
               "wrong types": lambda: gzip.compress(_table(f"zero,{GOOD_ARCH},90,91,70,40")),
           }, lookup, lambda d: ["--arch", GOOD_ARCH],
           setup=lambda d, m: _ship(d / "shipped" / "nb201_accuracy.csv.gz", m)),
    Reader("CIFAR-10 batch", "data/cifar-10-batches-py/data_batch_1", _cifar, {
        "wrong types": lambda: _cifar(data=np.zeros((2, 3072), np.float32)),
        "wrong shapes": lambda: _cifar(data=np.zeros((2, 100), np.uint8)),
        "non-finite": lambda: _cifar(data=np.full((2, 3072), NAN)),
        "labels of wrong types": lambda: _cifar(labels=["cat", "dog"]),
        "labels of wrong count": lambda: _cifar(labels=[0]),
        "labels out of range": lambda: _cifar(labels=[0, 10]),
        "not a dict": lambda: pickle.dumps([1, 2], protocol=2),
    }, search, lambda d: ["--dataset", "cifar10", "--data-dir", str(d / "data"), "--out", str(d / "out"),
                          "--no-progress", "--no-table"], setup=_cifar_setup),
    Reader("MNIST-5k (NAS search)", "mnist_5k.csv.gz", lambda: _mnist(f"{_PIXELS},3\n{_PIXELS},4\n"), {
        "wrong types": lambda: _mnist(f"{_PIXELS[:-1]}x,3\n"),
        "wrong shapes": lambda: _mnist("1,2,3\n"),
        "non-finite": lambda: _mnist(f"{_PIXELS[:-1]}nan,3\n"),
        "out of range": lambda: _mnist(f"{_PIXELS},12\n"),
        "not gzip": lambda: f"{_PIXELS},3\n".encode(),
    }, search, lambda d: ["--dataset", "mnist5k", "--out", str(d / "out"), "--no-progress", "--no-table"],
        setup=lambda d, m: m.setattr(nas_data, "mnist5k_path", lambda: d / "mnist_5k.csv.gz")),
    Reader("LIBSVM ijcnn1 (HPO ijcnn1)", "ijcnn1/ijcnn1.trn", lambda: _LIBSVM, {
        "wrong types": lambda: b"1 1:abc 2:0.25\n",
        "non-finite": lambda: b"1 1:nan 2:0.25\n-1 1:0.125 2:0.75\n",
        "labels": lambda: b"3 1:0.5 2:0.25\n-1 1:0.125 2:0.75\n",
    }, read=lambda path: ijcnn1_problem.load(path.parent), error=ijcnn1_problem.DataError,
        setup=lambda d, m: (d / "ijcnn1" / "ijcnn1.tst").write_bytes(_LIBSVM)),
    Reader("MNIST-5k (HPO run)", "mnist_5k.csv.gz", lambda: _mnist(f"{_PIXELS},3\n{_PIXELS},4\n"), {
        "wrong types": lambda: _mnist(f"{_PIXELS[:-1]}x,3\n"),
        "non-finite": lambda: _mnist(f"{_PIXELS[:-1]}inf,3\n"),
        "out of range": lambda: _mnist(f"{_PIXELS[:-1]}300,3\n"),
    }, hpo_run, lambda d: ["--task", "weight-decay", "--method", "random", "--out", str(d / "out"), "--no-progress"],
        setup=lambda d, m: m.setattr(hpo_data, "mnist5k_path", lambda: d / "mnist_5k.csv.gz")),
]

COMMON: dict[str, Callable[[Reader], bytes | None]] = {
    "empty": lambda r: b"",
    "truncated": lambda r: r.good()[: len(r.good()) // 2],
    "a folder": lambda r: None,
}


def _cases() -> list[tuple[Reader, str, Callable[[], bytes | None]]]:
    cases: list[tuple[Reader, str, Callable[[], bytes | None]]] = []
    for reader in READERS:
        for label, make in COMMON.items():
            cases.append((reader, label, lambda r=reader, make=make: make(r)))
        cases += [(reader, label, make) for label, make in reader.bad.items()]
    return cases


CASES = _cases()


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("reader", "label", "make"), CASES, ids=[f"{r.name}: {label}" for r, label, _ in CASES])
def test_every_reader_refuses_a_bad_file_in_one_line(reader: Reader, label: str, make: Callable[[], bytes | None],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / reader.path
    path.parent.mkdir(parents=True, exist_ok=True)
    content = make()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    reader.setup(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)
    if reader.command is None:
        assert reader.read is not None
        with pytest.raises(reader.error) as info:
            reader.read(path)
        err = str(info.value)
    else:
        try:
            code = reader.command.cli(reader.argv(tmp_path))
        except SystemExit as exit_info:  # argparse and the HPO commands exit through SystemExit
            code = exit_info.code
        assert code == 2, f"{reader.name}: {label}: exit status {code}"
        err = capsys.readouterr().err
    assert "Traceback" not in err and 1 <= len(err.strip().splitlines()) <= 3, err
    assert str(path) in err or str(path.parent) in err, f"the message does not name {path}: {err}"
    assert "expected" in err or "is not a file" in err, f"the message does not say what was expected: {err}"
    assert _snapshot(tmp_path) == before, "something was written"


def test_the_valid_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The starting points are good files: the bad cases differ from them only by what they name."""
    (tmp_path / "nb201.csv").write_bytes(READERS[6].good())
    assert lookup.cli(["--table", str(tmp_path / "nb201.csv"), "--arch", GOOD_ARCH]) == 0
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best_hparams.pt").write_bytes(READERS[2].good())
    assert torch.equal(load_best_hparams(tmp_path / "run")["log_l2"], torch.zeros(3))
    (tmp_path / "run" / "result.json").write_bytes(_search_result())
    assert report.cli([str(tmp_path / "run" / "result.json")]) == 0
    (tmp_path / "mnist_5k.csv.gz").write_bytes(READERS[9].good())
    monkeypatch.setattr(nas_data, "mnist5k_path", lambda: tmp_path / "mnist_5k.csv.gz")
    assert nas_data.load_dataset("mnist5k").train.labels.tolist() == [3, 4]
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(_cifar())
    _cifar_setup(tmp_path, monkeypatch)
    assert len(nas_data.load_dataset("cifar10", tmp_path / "data").train) == 10
    (tmp_path / "ijcnn1").mkdir()
    for name in ("ijcnn1.trn", "ijcnn1.tst"):
        (tmp_path / "ijcnn1" / name).write_bytes(_LIBSVM)
    problem = ijcnn1_problem.load(tmp_path / "ijcnn1")
    assert problem.train.tolist() == [[0.5, 0.25], [-0.125, -0.75]]  # rows y_i a_i
