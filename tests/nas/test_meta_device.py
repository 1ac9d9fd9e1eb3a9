"""One weight step and one architecture step of every search method on the ``meta`` device
(:mod:`tests.meta_probe`): the weight step never reads the host, and the architecture step's first host
read is the library's one read of its result; a CPU-created tensor on either path fails these tests.

Every method runs in the NAS-Bench-201 space; the DARTS space, whose supernet is the only code of its own
on these paths (the library path is the same), runs one weight step and one darts-1st step: on ``meta``
each op goes through Python, and its supernet has ten times the ops."""

from __future__ import annotations

import pytest
import torch

from applications.nas.common.data import ImageSet
from applications.nas.searching.config import GRADIENT_METHODS, METHODS, SearchConfig
from applications.nas.searching.loop import _Search
from tests.meta_probe import first_host_read

pytestmark = pytest.mark.float32  # the NAS application runs in float32

FIRST_READ = {
    "darts-1st": "hypergrad/api.py:_raise_on_nonfinite",
    "darts-2nd": "hypergrad/api.py:_raise_on_nonfinite",
    "idarts": "hypergrad/solvers/info.py:to_floats",
    "implicit-cg": "hypergrad/solvers/info.py:tolerance_record",
    "implicit-minres": "hypergrad/solvers/info.py:tolerance_record",
}


def _images(n: int = 16) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, 8, 8), generator=gen, dtype=torch.uint8),
                    torch.randint(0, 10, (n,), generator=gen), 10, (0.5,) * 3, (0.25,) * 3)


def _meta_search(method: str, space: str) -> _Search:
    config = SearchConfig(space=space, method=method, dataset="cifar10", batch_size=4, channels=2, cells_per_stage=1,
                          layers=3, solver_max_iter=2, device="meta")
    return _Search(config, _images(), _images())


SPACE_METHODS = [(m, "nb201") for m in METHODS] + [("darts-1st", "darts")]
ARCH_METHODS = [(m, "nb201") for m in GRADIENT_METHODS] + [("darts-1st", "darts")]


@pytest.mark.parametrize(("method", "space"), SPACE_METHODS)
def test_a_weight_step_runs_on_meta_without_a_host_read(method: str, space: str) -> None:
    search = _meta_search(method, space)
    before = {name: p for name, p in search.weights.items()}
    metrics = search.weight_step(search.train_stream())
    assert metrics.device.type == "meta" and metrics.shape == (2,)
    assert all(p.device.type == "meta" for p in search.net.parameters())
    assert all(search.weights[name] is p for name, p in before.items())  # stepped in place


def test_the_first_read_table_covers_every_gradient_method() -> None:
    assert set(FIRST_READ) == set(GRADIENT_METHODS)


@pytest.mark.parametrize(("method", "space"), ARCH_METHODS)
def test_an_arch_step_stops_on_meta_at_the_librarys_one_read(method: str, space: str) -> None:
    search = _meta_search(method, space)
    batch = search.train_stream()
    search.weight_step(batch)
    assert first_host_read(lambda: search.arch_step(search.config.w_lr, batch)) == FIRST_READ[method]
