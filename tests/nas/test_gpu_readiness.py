"""What a GPU search depends on, shown on the CPU: the backend flags, each process's device, resuming on
another device, and augmentation of both halves of the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from applications.nas.commands.search import cli as search_cli
from applications.nas.common import backend
from applications.nas.common.data import BatchStream, load_dataset, split_train_val
from applications.nas.common.distributed import process_device
from applications.nas.searching.config import SearchConfig
from applications.nas.searching.loop import CHECKPOINT, _Search, run_search

pytestmark = pytest.mark.float32


@pytest.fixture
def restored_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    backend.configure("cpu")


def test_the_backend_is_full_float32_by_default_and_its_settings_are_recorded(restored_backend: None) -> None:
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # what a GPU starts with
    record = backend.configure("cuda")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"
    assert record["tf32_cudnn"] is False and record["tf32_matmul"] is False
    assert record["cudnn_benchmark"] is True  # static shapes: autotuning pays on CUDA
    assert record["deterministic_algorithms"] is False and record["torch"] == torch.__version__
    assert backend.configure("cpu", tf32=True)["tf32_cudnn"] is True
    assert torch.get_float32_matmul_precision() == "high"


def test_deterministic_sets_every_switch_before_cuda_starts(restored_backend: None) -> None:
    import os

    record = backend.configure("cuda", deterministic=True)
    assert torch.backends.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark  # autotuning times kernels: not reproducible
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == backend.CUBLAS_WORKSPACE
    assert record["cublas_workspace_config"] == backend.CUBLAS_WORKSPACE and record["cudnn_deterministic"]
    backend.configure("cuda")
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


@pytest.mark.parametrize(("device", "local_rank", "world", "expected"), [
    ("cuda", 1, 2, "cuda:1"),
    ("cuda:0", 1, 2, "cuda:1"),  # an explicit index would put both processes on GPU 0
    ("cuda:3", 0, 4, "cuda:0"),
    ("cuda:1", 0, 1, "cuda:1"),  # one process: the device as given
    ("cuda", 0, 1, "cuda"),
    ("cpu", 1, 2, "cpu"),
])
def test_each_process_of_a_job_takes_its_own_gpu(device: str, local_rank: int, world: int, expected: str) -> None:
    assert process_device(device, local_rank, world) == torch.device(expected)


def test_a_search_records_its_backend_and_resumes_on_the_device_given(tmp_path: Path, tiny_search: list[str],
                                                                      restored_backend: None) -> None:
    """A checkpoint written on a GPU (here: its config says cuda:1) continues on the CPU with --device cpu."""
    from applications.nas.commands.search import build_parser, config_from_args

    out = tmp_path / "cut"
    config = config_from_args(build_parser().parse_args([*tiny_search, "--method", "darts-1st", "--out", str(out)]))

    class Interrupted(Exception):
        pass

    def stop(epoch: int, _state: object) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        run_search(config, out, progress=False, on_epoch_end=stop)
    checkpoint = torch.load(out / CHECKPOINT, weights_only=False)
    checkpoint["config"]["device"] = "cuda:1"
    torch.save(checkpoint, out / CHECKPOINT)
    assert search_cli(["--resume", str(out), "--device", "cpu", "--no-progress"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["device"] == "cpu" and result["epochs"] == 2
    assert result["backend"]["device"] == "cpu" and result["backend"]["tf32_cudnn"] is False
    assert result["backend"]["deterministic_algorithms"] is False
    assert [r["epoch"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())] == [1, 2]


def test_augment_applies_to_the_batches_of_both_halves() -> None:
    """With augmentation the α batches are crops and flips of the validation half (as in DARTS and
    NAS-Bench-201's searches), on the same images in the same order as without."""
    config = SearchConfig(dataset="digits", train_subset=96, batch_size=16, channels=2, cells_per_stage=1,
                          augment=True)
    train, val = split_train_val(load_dataset("digits").train, config.seed, config.train_subset)
    search = _Search(config, train, val)
    plain = BatchStream(val, config.batch_size, config.seed + 2, augment=False)
    unaugmented = _Search(replace(config, augment=False), train, val).val_stream
    for _ in range(3):
        x, y = search.val_stream()
        x0, y0 = plain()
        torch.testing.assert_close(unaugmented()[0], x0)
        assert torch.equal(y, y0) and not torch.equal(x, x0)
