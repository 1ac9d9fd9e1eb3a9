from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import hypergrad as hg
from applications.nas.common.data import load_dataset, split_train_val
from applications.nas.retraining.nb201 import DerivedNetwork
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig
from applications.nas.searching.loop import _Search
from applications.nas.spaces.nb201.cell import FixedCell, MixedCell
from applications.nas.spaces.nb201.genotype import OPERATIONS, Cell
from applications.nas.spaces.nb201.network import ALPHA_NAME, Supernet

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32


@pytest.mark.parametrize(("in_channels", "size", "channels", "cells", "classes"),
                         [(1, 14, 4, 1, 10), (3, 32, 2, 2, 100), (1, 8, 3, 1, 7)])
def test_supernet_maps_images_to_class_scores(in_channels: int, size: int, channels: int, cells: int,
                                              classes: int) -> None:
    net = Supernet(channels, cells, in_channels, classes)
    assert net(torch.randn(3, in_channels, size, size)).shape == (3, classes)
    # stem, 3 stages of `cells` cells, 2 reductions
    assert sum(isinstance(m, MixedCell) for m in net.modules()) == 3 * cells
    assert net.alpha.shape == (6, 5)


def test_supernet_batchnorm_has_no_affine_parameters() -> None:
    net = Supernet(4, 1, 1, 10)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.weight is None and m.bias is None for m in norms)


def test_split_parameters_hands_out_the_network_tensors_themselves() -> None:
    net = Supernet(4, 1, 1, 10)
    weights, alphas = net.split_parameters()
    assert list(alphas) == [ALPHA_NAME] and alphas[ALPHA_NAME] is net.alpha
    assert len(weights) + 1 == len(list(net.parameters()))
    assert all(w is p for (name, p), w in zip(
        ((n, p) for n, p in net.named_parameters() if n != ALPHA_NAME), weights.values()))


def test_functional_call_uses_the_alpha_it_is_given() -> None:
    net = Supernet(4, 1, 1, 10).eval()
    weights, alphas = net.split_parameters()
    x = torch.randn(2, 1, 14, 14)
    same = functional_call(net, (weights, alphas), (x,))
    other = functional_call(net, (weights, {ALPHA_NAME: torch.randn(6, 5)}), (x,))
    assert torch.allclose(same, net(x))
    assert not torch.allclose(same, other)


def test_mixed_cell_with_one_hot_weights_equals_the_fixed_cell() -> None:
    torch.manual_seed(0)
    ops = ("nor_conv_3x3", "none", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none")
    mixed = MixedCell(3, track_running_stats=False)
    fixed = FixedCell(Cell(ops), 3, track_running_stats=False)
    for edge, name in enumerate(ops):
        if name != "none":
            fixed.edges[edge].load_state_dict(mixed.edges[edge][OPERATIONS.index(name) - 1].state_dict())
    one_hot = torch.zeros(6, 5)
    one_hot[torch.arange(6), [OPERATIONS.index(n) for n in ops]] = 1.0
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(mixed(x, one_hot), fixed(x), atol=1e-6)


def test_derived_network_of_a_disconnected_cell_ignores_its_input_in_the_cells() -> None:
    net = DerivedNetwork(Cell(("none",) * 6), 2, 1, 1, 10).eval()
    outputs: list[torch.Tensor] = []
    for cell in (m for m in net.modules() if isinstance(m, FixedCell)):
        cell.register_forward_hook(lambda module, args, out: outputs.append(out))
    a, b = net(torch.randn(2, 1, 8, 8)), net(10 * torch.randn(2, 1, 8, 8))
    assert a.shape == (2, 10) and len(outputs) == 2 * 3
    assert all(torch.equal(out, torch.zeros_like(out)) for out in outputs)
    # Every cell cuts the path, so what reaches the classifier no longer depends on the images.
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def tiny_search_objects() -> dict[str, _Search]:
    data = load_dataset("digits")
    train, val = split_train_val(data.train, 0, 128)
    searches = {}
    for method in GRADIENT_METHODS:
        config = SearchConfig(method=method, dataset="digits", channels=2, cells_per_stage=1, batch_size=32,
                              solver_max_iter=3, track_bn_stats=True)
        searches[method] = _Search(config, train, val)
    return searches


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_method_gives_alpha_a_finite_gradient_without_touching_the_network(
        method: str, tiny_search_objects: dict[str, _Search]) -> None:
    search = tiny_search_objects[method]
    before = {k: v.detach().clone() for k, v in search.net.state_dict().items()}
    search.weight_step(search.train_stream())  # moves weights and BN statistics
    after_weight_step = {k: v.detach().clone() for k, v in search.net.state_dict().items()}
    assert any(not torch.equal(before[k], after_weight_step[k]) for k in before if "running_mean" in k)
    alpha_before = search.alpha.detach().clone()
    info = search.arch_step(0.025, search.train_stream())
    assert search.alpha.grad is not None and search.alpha.grad.shape == (6, 5)
    assert torch.isfinite(search.alpha.grad).all() and search.alpha.grad.abs().sum() > 0
    assert not torch.equal(search.alpha.detach(), alpha_before)  # the Adam step was taken
    state = search.net.state_dict()
    # Only alpha changed in the architecture step: weights and BatchNorm running statistics did not.
    assert all(torch.equal(state[k], after_weight_step[k]) for k in state if k != ALPHA_NAME)
    expected_hvps = {"darts-1st": 0, "darts-2nd": 0, "idarts": 2, "implicit-cg": None, "implicit-minres": None}[method]
    if expected_hvps is not None:
        assert info.hvps == expected_hvps


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the short Neumann series may grow on this untrained net
def test_second_order_methods_differ_from_first_order(tiny_search_objects: dict[str, _Search]) -> None:
    search = tiny_search_objects["darts-1st"]
    batch = search.train_stream()
    val = search.val_stream()
    grads = {}
    for name, method in (("first", hg.FirstOrder()), ("neumann", hg.Neumann(terms=2, lr=0.025)),
                         ("cg", hg.CG(max_iter=3, damping=0.1))):
        grads[name] = hg.hypergradient(search.loss, search.inner_loss, search.weights, search.alphas,
                                       outer_batch=val, inner_batch=batch, method=method).grads[ALPHA_NAME]
    assert not torch.allclose(grads["first"], grads["neumann"])
    assert not torch.allclose(grads["first"], grads["cg"])
