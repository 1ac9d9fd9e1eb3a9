"""Builds the CIFAR-10 training subset shipped with the package (dataset ``cifar10-bundled`` of the search).

    python -m scripts.build_cifar10_subset --data-dir DATA [--out applications/nas/common/bundled]    (from the repository root)

Input: the official CIFAR-10 "python version" folder ``DATA/cifar-10-batches-py``, read by the project's own
loader; the 50,000 training images of ``data_batch_1`` .. ``data_batch_5`` are numbered 0..49,999 in file
order. Output, in ``--out``:

* ``cifar10_train_10k_16px.npz``: ``images`` (uint8, 10,000 x 3 x 16 x 16, channels first), ``labels``
  (uint8, 0..9) and ``source_indices`` (int32, each image's number in the training batches), in ascending
  source order;
* ``cifar10_train_10k_16px.json``: how it was made (source files and their sha256, seed, selection rule,
  resize method) and the sha256 of the ``.npz``.

Selection: class-balanced, 1,000 images per class; for class c = 0..9 in turn, ``rng.choice`` of 1,000 of
that class's indices without replacement, with one ``numpy.random.default_rng(0)`` shared by the ten draws.
Resize: 32x32 -> 16x16 by the area (box) average of each 2x2 pixel block, per channel, rounded half up
(``(a + b + c + d + 2) // 4`` in integers, so no floating point enters). The ``.npz`` is the format
``numpy.savez_compressed`` writes (a deflated zip of ``.npy`` files, read by ``numpy.load``), written with
fixed zip timestamps so that the same input gives the same bytes and the same sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from applications.nas.common.data import BUNDLED_CIFAR10, BUNDLED_CIFAR10_SIZE, DataError, load_dataset

PER_CLASS = 1000
SEED = 0
CLASSES = 10
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "applications" / "nas" / "common" / "bundled"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry: no build clock in the bytes


def select_balanced(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of each class (drawn with one seeded generator), ascending."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(CLASSES):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} training images; expected at least {per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def box_downsample(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, C, H, W)`` uint8 images to ``size`` x ``size``: the mean of each block, rounded half up."""
    n, c, h, w = images.shape
    if h % size or w % size:
        raise ValueError(f"images of {h}x{w} do not split into {size}x{size} equal blocks")
    fh, fw = h // size, w // size
    sums = images.astype(np.uint32).reshape(n, c, size, fh, size, fw).sum(axis=(3, 5))
    area = fh * fw
    return ((sums + area // 2) // area).astype(np.uint8)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` as ``numpy.savez_compressed`` writes it, but with fixed entry timestamps (reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(data_dir: Path, out: Path, per_class: int = PER_CLASS, seed: int = SEED) -> dict[str, Any]:
    """Writes the subset and its record into ``out``; returns the record."""
    folder = data_dir / "cifar-10-batches-py"
    train = load_dataset("cifar10", data_dir).train  # one-line DataError for a missing or malformed folder
    labels = train.labels.numpy()
    indices = select_balanced(labels, per_class, seed)
    images = box_downsample(train.images.numpy()[indices], BUNDLED_CIFAR10_SIZE)
    out.mkdir(parents=True, exist_ok=True)
    target = out / BUNDLED_CIFAR10
    write_npz(target, {"images": images, "labels": labels[indices].astype(np.uint8),
                       "source_indices": indices.astype(np.int32)})
    record = {
        "file": target.name,
        "sha256": _sha256(target),
        "bytes": target.stat().st_size,
        "arrays": {"images": f"uint8 {list(images.shape)} (N, C, H, W)", "labels": "uint8, 0..9",
                   "source_indices": "int32, each image's number among the training batches' 50,000 images"},
        "source": {"folder": "cifar-10-batches-py (official CIFAR-10 python version layout)",
                   "files": {name: _sha256(folder / name) for name in TRAIN_FILES},
                   "numbering": "data_batch_1..5 concatenated in file order, 0..49,999"},
        "selection": {"images_per_class": per_class, "seed": seed,
                      "rule": "numpy.random.default_rng(seed); for class c = 0..9: rng.choice(indices of class c, "
                              "images_per_class, replace=False); all indices sorted ascending"},
        "resize": f"32x32 -> {BUNDLED_CIFAR10_SIZE}x{BUNDLED_CIFAR10_SIZE}: area (box) average of each 2x2 block, "
                  "per channel, rounded half up, (a + b + c + d + 2) // 4",
        "class_counts": np.bincount(labels[indices], minlength=CLASSES).tolist(),
    }
    (out / target.with_suffix(".json").name).write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder that holds cifar-10-batches-py/")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder [{DEFAULT_OUT}]")
    args = parser.parse_args(argv)
    try:
        record = build(args.data_dir, args.out)
    except DataError as err:
        print(f"build_cifar10_subset: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / record['file']}: {record['bytes']:,} bytes, sha256 {record['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
