"""Files a user is handed run no code: checkpoints (search, training, HPO best_hparams) and CIFAR batches.

Each crafted file carries a payload whose unpickling would create a file; the control test shows that
plain ``pickle`` does run it, and every reader of the project refuses the file in one line without
creating it. Also: old checkpoints get a one-line answer (or still load), and RNG states round-trip
through the safe loader, the CUDA ones included (with ``torch.cuda`` monkeypatched).
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from applications import checkpoints
from applications.checkpoints import CheckpointError
from applications.hpo.results import HPARAMS_FILE, load_best_hparams
from applications.nas.commands import search, train
from applications.nas.common.data import DataError, load_dataset

pytestmark = pytest.mark.float32


class Payload:
    """Unpickled, it opens ``path`` for writing: creating the file is the code it runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.path, "w")


def _torch_file(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_payload_runs_when_unpickled_without_restriction(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    handle = pickle.loads(pickle.dumps({"x": Payload(marker)}))["x"]
    handle.close()
    assert marker.exists()  # so the tests below would see it run


def _payload_checkpoint(kind: str, marker: Path) -> dict[str, object]:
    return {"format": checkpoints.FORMAT, "kind": kind, "version": 3, "model": {"w": Payload(marker)}}


@pytest.mark.parametrize(("command", "kind"), [(search, "nas-search"), (train, "nas-train")])
def test_a_checkpoint_with_a_payload_is_refused_in_one_line_and_runs_nothing(
        command: object, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "run"
    path = _torch_file(folder / "checkpoint.pt", _payload_checkpoint(kind, marker))
    before = _listing(folder)
    assert command.cli(["--resume", str(folder)]) == 2  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and "Traceback" not in err and str(path) in err and "io.open" in err, err
    assert _listing(folder) == before  # nothing written


def test_best_hparams_with_a_payload_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _torch_file(tmp_path / HPARAMS_FILE, {"hparams": {"log_l2": Payload(marker)}})
    with pytest.raises(CheckpointError, match="never loaded") as err:
        load_best_hparams(path)
    assert not marker.exists() and "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_cifar_batch_with_a_payload_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": Payload(marker)}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="refers to io.open") as err:
        load_dataset("cifar10", tmp_path)
    assert not marker.exists() and "\n" not in str(err.value) and "data_batch_1" in str(err.value)


def test_cifar_batches_of_python_2_and_3_pickles_load(tmp_path: Path) -> None:
    """Protocol 2 from Python 3 stores bytes through _codecs.encode, admitted for latin-1 only."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    for protocol, name in zip((2, 2, 3, 4, 4, 2), [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {b"batch_label": b"batch", b"data": data, b"labels": [3, 7], b"filenames": [b"a.png", b"b.png"]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    loaded = load_dataset("cifar10", tmp_path)
    assert torch.equal(loaded.train.images[:2].reshape(2, -1), torch.from_numpy(data))
    assert loaded.train.labels.tolist() == [3, 7] * 5


def test_an_object_array_in_a_cifar_batch_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": np.array([[1, "x"]], dtype=object),
                                                        b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="array of Python objects"):
        load_dataset("cifar10", tmp_path)


def test_a_checkpoint_of_an_older_version_gets_one_line_saying_so(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Version 2 checkpoints pickled numpy's RNG state: they are not unpickled, and the answer says why."""
    folder = tmp_path / "old"
    _torch_file(folder / "checkpoint.pt", {"version": 2, "rng": {"numpy": np.random.get_state(),
                                                                 "python": random.getstate()}})
    assert search.cli(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "written by an older version of hypergrad" in err, err


def test_best_hparams_of_an_older_version_still_load(tmp_path: Path) -> None:
    """Earlier runs saved the plain dict of tensors, which the safe loader accepts."""
    saved = {"log_l2": torch.tensor([0.5, -1.0], dtype=torch.float64)}
    _torch_file(tmp_path / HPARAMS_FILE, saved)
    loaded = load_best_hparams(tmp_path)
    assert loaded.keys() == saved.keys() and torch.equal(loaded["log_l2"], saved["log_l2"])


def test_a_checkpoint_of_another_kind_or_version_is_refused(tmp_path: Path) -> None:
    path = _torch_file(tmp_path / "c.pt", checkpoints.pack("nas-train", 2, {}))
    with pytest.raises(CheckpointError, match="kind 'nas-train'"):
        checkpoints.load(path, "nas-search", 3, "a search checkpoint")
    with pytest.raises(CheckpointError, match="layout version 2 of nas-train; this version of hypergrad reads version 5"):
        checkpoints.load(path, "nas-train", 5, "a training checkpoint")


def test_pack_refuses_what_the_safe_loader_would_not_read() -> None:
    with pytest.raises(TypeError, match=r"checkpoint\['rng'\]\['numpy'\] is a ndarray"):
        checkpoints.pack("nas-search", 3, {"rng": {"numpy": np.zeros(3)}})


def _draws() -> tuple[torch.Tensor, np.ndarray, list[float], float]:
    return torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], float(np.random.randn())


def _through_the_safe_loader(state: dict[str, object]) -> dict[str, object]:
    buffer = io.BytesIO()
    torch.save(checkpoints.pack("test", 1, {"rng": state}), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)["rng"]


def test_cpu_rng_states_round_trip_through_the_safe_loader(tmp_path: Path) -> None:
    np.random.randn()  # leaves a cached Gaussian in numpy's state, which must come back too
    state = _through_the_safe_loader(checkpoints.rng_state())
    expected = _draws()
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    checkpoints.set_rng_state(state, tmp_path / "c.pt")
    got = _draws()
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]
    assert state["cuda"] == []  # this CPU machine has no CUDA states to keep


def test_cuda_rng_states_are_saved_and_restored_only_on_a_cuda_device(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [torch.arange(16, dtype=torch.uint8) + i for i in range(2)]
    restored: list[tuple[int, torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [d.clone() for d in devices])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((device, s)))
    state = _through_the_safe_loader(checkpoints.rng_state())
    assert [torch.equal(a, b) for a, b in zip(state["cuda"], devices)] == [True, True]
    checkpoints.set_rng_state(state, tmp_path / "c.pt", "cpu")
    assert restored == []  # a CPU resume leaves the CUDA generators alone
    checkpoints.set_rng_state(state, tmp_path / "c.pt", "cuda:1")
    assert [i for i, _ in restored] == [0, 1] and all(torch.equal(s, d) for (_, s), d in zip(restored, devices))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    restored.clear()
    checkpoints.set_rng_state(state, tmp_path / "c.pt", "cuda")
    assert [i for i, _ in restored] == [0]  # a machine with fewer devices restores those it has


@pytest.mark.parametrize(("part", "value", "message"), [
    ("torch", torch.zeros(3, dtype=torch.float32), "rng\\['torch'\\] is not a 1-d uint8 tensor"),
    ("cuda", [torch.zeros(2, 2, dtype=torch.uint8)], "rng\\['cuda'\\]\\[0\\] is not a 1-d uint8 tensor"),
    ("numpy", {"key": torch.zeros(3, dtype=torch.uint8), "pos": 0, "has_gauss": 0, "gauss": 0.0}, "wrong size"),
    ("python", [1, 2], "rng\\['python'\\] is list"),
])
def test_a_bad_rng_state_is_refused_before_any_generator_changes(part: str, value: object, message: str,
                                                                  tmp_path: Path) -> None:
    state = checkpoints.rng_state()
    state[part] = value
    before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=message):
        checkpoints.set_rng_state(state, tmp_path / "c.pt")
    assert torch.equal(torch.get_rng_state(), before)
