"""The CIFAR-10 subset shipped with the package (dataset ``cifar10-bundled``) and the script that builds it."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from applications.nas.commands.search import PRESETS
from applications.nas.commands.search import cli as search_cli
from applications.nas.common.data import BUNDLED_CIFAR10, DataError, Dataset, load_dataset, split_train_val
from scripts.build_cifar10_subset import box_downsample, build
from scripts.build_cifar10_subset import main as build_main

pytestmark = pytest.mark.float32
BUNDLED = Path(__file__).resolve().parents[2] / "applications" / "nas" / "common" / "bundled"
#: CIFAR-10's per-channel training means (the figures every CIFAR-10 pipeline normalises with).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


@pytest.fixture(scope="module")
def bundled() -> Dataset:
    return load_dataset("cifar10-bundled")


def test_the_bundled_file_is_the_one_its_record_describes() -> None:
    record = json.loads((BUNDLED / "cifar10_train_10k_16px.json").read_text())
    data = (BUNDLED / BUNDLED_CIFAR10).read_bytes()
    assert record["file"] == BUNDLED_CIFAR10 and record["bytes"] == len(data) <= 8_000_000
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    with np.load(BUNDLED / BUNDLED_CIFAR10) as arrays:
        indices, labels = arrays["source_indices"], arrays["labels"]
    assert indices.dtype == np.int32 and np.all(np.diff(indices) > 0) and 0 <= indices[0] and indices[-1] < 50000
    assert np.bincount(labels, minlength=10).tolist() == record["class_counts"] == [1000] * 10


def test_the_loader_gives_10000_balanced_uint8_images_at_16x16(bundled: Dataset) -> None:
    train = bundled.train
    assert bundled.name == "cifar10-bundled" and bundled.test is None
    assert train.images.dtype == torch.uint8 and tuple(train.images.shape) == (10000, 3, 16, 16)
    assert train.labels.dtype == torch.int64 and torch.bincount(train.labels).tolist() == [1000] * 10
    assert train.num_classes == 10 and train.in_channels == 3 and train.image_size == 16
    # Real CIFAR-10: the channel means of the whole training set (box averaging keeps means).
    assert train.mean == pytest.approx(CIFAR10_MEAN, abs=0.01)
    assert all(0.2 < s < 0.3 for s in train.std)


def test_a_search_split_is_5000_and_5000_images_normalised_per_channel(bundled: Dataset) -> None:
    weights, alpha = split_train_val(bundled.train, seed=0)
    assert len(weights) == len(alpha) == 5000
    again, _ = split_train_val(bundled.train, seed=0)
    assert torch.equal(again.labels, weights.labels) and torch.equal(again.images, weights.images)
    x, _ = bundled.train.batch(torch.arange(len(bundled.train)))
    assert x.dtype == torch.float32 and tuple(x.shape) == (10000, 3, 16, 16)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_the_loader_shrinks_on_request_and_refuses_to_enlarge() -> None:
    assert tuple(load_dataset("cifar10-bundled", image_size=8).train.images.shape) == (10000, 3, 8, 8)
    with pytest.raises(DataError, match="--image-size 32 would only enlarge it"):
        load_dataset("cifar10-bundled", image_size=32)


def test_a_tiny_search_on_the_bundled_set_reports_benchmark_accuracies(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert search_cli(["--dataset", "cifar10-bundled", "--train-subset", "96", "--batch-size", "16", "--channels", "2",
                       "--cells-per-stage", "1", "--epochs", "1", "--method", "idarts", "--no-progress",
                       "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["dataset"] == "cifar10-bundled"
    entry = result["benchmark"]["arch"]
    assert entry["arch"] == result["arch"] and 10.0 <= entry["cifar10_test"] <= 100.0
    assert 0.0 <= entry["percentile"]["cifar10_test"] <= 100.0
    assert "the search itself saw CIFAR-10 at 16x16 (96 bundled training images)" in capsys.readouterr().out


def test_the_demo_preset_is_cifar_cpu_on_the_bundled_set() -> None:
    demo, cpu = PRESETS["cifar-demo"], PRESETS["cifar-cpu"]
    assert demo["dataset"] == "cifar10-bundled" and "data_dir" not in demo
    shared = set(cpu) - {"dataset", "image_size", "train_subset", "epochs"}
    assert {k: demo[k] for k in shared} == {k: cpu[k] for k in shared}
    assert demo["epochs"] <= cpu["epochs"]


def _fake_cifar(folder: Path, per_batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A small folder in the official python-version layout: five training batches and a test batch of
    random images, every class present in each batch. Returns all training images and labels in file order."""
    rng = np.random.default_rng(seed)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        y = rng.permutation(np.arange(per_batch) % 10).tolist()
        with (root / name).open("wb") as handle:
            pickle.dump({b"data": x, b"labels": y}, handle, protocol=2)
        if name != "test_batch":
            images.append(x.reshape(-1, 3, 32, 32))
            labels.append(np.array(y))
    return np.concatenate(images), np.concatenate(labels)


def test_the_builder_takes_balanced_box_averaged_images_and_is_deterministic(tmp_path: Path) -> None:
    images, labels = _fake_cifar(tmp_path / "data", per_batch=20, seed=1)  # 100 images, 10 per class
    record = build(tmp_path / "data", tmp_path / "a", per_class=3, seed=0)
    with np.load(tmp_path / "a" / BUNDLED_CIFAR10) as arrays:
        built = {name: arrays[name] for name in arrays.files}
    assert built["images"].dtype == np.uint8 and built["images"].shape == (30, 3, 16, 16)
    assert built["labels"].dtype == np.uint8 and np.bincount(built["labels"]).tolist() == [3] * 10
    chosen = built["source_indices"]
    assert len(set(chosen.tolist())) == 30 and np.all(np.diff(chosen) > 0)
    assert np.array_equal(built["labels"], labels[chosen])
    # Each pixel is the mean of its 2x2 block, rounded half up: checked with torch's average pooling.
    expected = torch.floor(F.avg_pool2d(torch.from_numpy(images[chosen]).double(), 2) + 0.5).to(torch.uint8)
    assert np.array_equal(built["images"], expected.numpy())
    # The record says what the file is; the same input and seed give the same bytes, another seed other images.
    data = (tmp_path / "a" / BUNDLED_CIFAR10).read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["class_counts"] == [3] * 10
    assert json.loads((tmp_path / "a" / "cifar10_train_10k_16px.json").read_text()) == record
    build(tmp_path / "data", tmp_path / "b", per_class=3, seed=0)
    assert (tmp_path / "b" / BUNDLED_CIFAR10).read_bytes() == data
    other = build(tmp_path / "data", tmp_path / "c", per_class=3, seed=1)
    assert other["sha256"] != record["sha256"]


def test_box_downsample_rounds_half_up() -> None:
    block = np.array([[[[0, 1], [0, 1]]], [[[1, 1], [1, 0]]], [[[255, 254], [255, 255]]]], dtype=np.uint8)
    assert box_downsample(block, 1).ravel().tolist() == [1, 1, 255]  # means 0.5, 0.75, 254.75


def test_the_builder_refuses_a_missing_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar-10-batches-py" in err and not (tmp_path / "out").exists()
