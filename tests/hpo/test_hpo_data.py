"""The bundled datasets load as documented; splits and label flips do what they say."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from applications.hpo.baselines import coarse_to_fine
from applications.hpo.data import flip_labels, load_arrays, split_dataset
from applications.hpo.results import atomic_write


def test_mnist5k_is_5000_images_of_ten_balanced_classes_in_unit_range():
    x, y = load_arrays("mnist5k")
    assert x.shape == (5000, 784) and y.shape == (5000,)
    assert (torch.bincount(torch.as_tensor(y)) == 500).all()
    assert x.min() == 0.0 and x.max() == 1.0


def test_split_is_disjoint_seeded_and_standardised_on_train():
    first = split_dataset("breast-cancer", (None, None, None), seed=3, standardize=True)
    again = split_dataset("breast-cancer", (None, None, None), seed=3, standardize=True)
    other = split_dataset("breast-cancer", (None, None, None), seed=4, standardize=True)
    assert [len(first.train), len(first.val), len(first.test)] == [189, 189, 189]
    assert torch.equal(first.val.x, again.val.x) and not torch.equal(first.val.x, other.val.x)
    torch.testing.assert_close(first.train.x.mean(0), torch.zeros(30, dtype=torch.float64))
    rows = {tuple(r.tolist()) for part in (first.train, first.val, first.test) for r in part.x}
    assert len(rows) == 189 * 3
    with pytest.raises(ValueError, match="do not fit"):
        split_dataset("digits", (2000, None, None), seed=0)


def test_flip_labels_flips_the_fraction_asked_always_to_another_class():
    y = torch.arange(1000) % 10
    noisy, flipped = flip_labels(y, 0.4, 10, seed=0)
    assert int(flipped.sum()) == 400
    assert (noisy[flipped] != y[flipped]).all() and (noisy[~flipped] == y[~flipped]).all()
    # Targets spread over the other nine classes (none of them left out).
    assert len(set(((noisy[flipped] - y[flipped]) % 10).tolist())) == 9


def test_coarse_to_fine_grid_visits_ends_then_halves():
    points = coarse_to_fine(0.0, 8.0)
    assert [next(points) for _ in range(9)] == [0.0, 8.0, 4.0, 2.0, 6.0, 1.0, 3.0, 5.0, 7.0]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    """Not the private 0600 of a temporary file: a result or chart is as readable as any file the user writes."""
    mask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "result.json", lambda handle: handle.write(b"{}"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o644
