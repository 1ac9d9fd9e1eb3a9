"""The DARTS search space: network shapes, derivation, the genotype string, and searches in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from applications.nas.commands.search import cli as search_cli
from applications.nas.common.data import load_dataset, split_train_val
from applications.nas.searching.config import GRADIENT_METHODS, SearchConfig
from applications.nas.searching.loop import CHECKPOINT, _Search
from applications.nas.spaces.darts.genotype import EDGES, OPERATIONS, Genotype, GenotypeError, derive_genotype
from applications.nas.spaces.darts.supernet import ALPHA_NAMES, DartsMixedCell, DartsSupernet

# The NAS application runs in float32; the suite-wide default is float64 for solver tests.
pytestmark = pytest.mark.float32

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)
"""The cell DARTS (second order) found on CIFAR-10, as printed in its repository."""

TINY_DARTS = ["--space", "darts", "--dataset", "digits", "--train-subset", "64", "--batch-size", "16",
              "--channels", "2", "--layers", "3", "--epochs", "1", "--alpha-lr", "0.05", "--no-progress"]


def test_the_space_has_eight_operations_on_fourteen_edges() -> None:
    assert len(OPERATIONS) == 8 and OPERATIONS[0] == "none"
    assert len(EDGES) == 14 and EDGES[:5] == ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@pytest.mark.parametrize(("reduction", "side"), [(False, 8), (True, 4)])
def test_a_cell_concatenates_four_nodes_and_a_reduction_cell_halves_the_resolution(reduction: bool,
                                                                                  side: int) -> None:
    cell = DartsMixedCell(c_prev_prev=6, c_prev=6, channels=3, reduction=reduction, reduction_prev=False,
                          track_running_stats=False)
    weights = torch.softmax(torch.randn(len(EDGES), len(OPERATIONS)), dim=-1)
    out = cell(torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8), weights)
    assert out.shape == (2, 4 * 3, side, side)


def test_a_cell_after_a_reduction_accepts_its_inputs_at_two_resolutions_also_odd_ones() -> None:
    cell = DartsMixedCell(c_prev_prev=4, c_prev=8, channels=2, reduction=False, reduction_prev=True,
                          track_running_stats=False)
    weights = torch.full((len(EDGES), len(OPERATIONS)), 1 / len(OPERATIONS))
    assert cell(torch.randn(2, 4, 7, 7), torch.randn(2, 8, 4, 4), weights).shape == (2, 8, 4, 4)


def test_the_supernet_classifies_and_splits_its_two_alphas_from_the_weights() -> None:
    net = DartsSupernet(channels=2, layers=3, in_channels=1, num_classes=10)
    assert [cell.reduction for cell in net.cells] == [False, True, True]
    assert net(torch.randn(3, 1, 14, 14)).shape == (3, 10)
    weights, alphas = net.split_parameters()
    assert tuple(alphas) == ALPHA_NAMES and all(a.shape == (14, 8) for a in alphas.values())
    assert alphas["alpha_normal"] is net.alpha_normal and not set(weights) & set(alphas)
    assert len(weights) + len(alphas) == len(list(net.parameters()))
    assert not any(m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="at least 3 layers"):
        DartsSupernet(layers=2)


def test_derivation_keeps_the_two_strongest_inputs_per_node_and_never_none() -> None:
    normal = torch.zeros(len(EDGES), len(OPERATIONS))
    # Node 2: edge from 1 strongest (dil_conv_5x5), then from 0 (skip_connect).
    normal[EDGES.index((2, 0)), OPERATIONS.index("skip_connect")] = 2.0
    normal[EDGES.index((2, 1)), OPERATIONS.index("dil_conv_5x5")] = 3.0
    # Node 3: `none` dominates the edge from 0, yet that edge is ranked by its best other operation.
    normal[EDGES.index((3, 0)), OPERATIONS.index("none")] = 9.0
    normal[EDGES.index((3, 1)), OPERATIONS.index("sep_conv_3x3")] = 1.0
    normal[EDGES.index((3, 2)), OPERATIONS.index("avg_pool_3x3")] = 2.0
    # Nodes 4 and 5: the last two inputs win.
    for to_node in (4, 5):
        normal[EDGES.index((to_node, to_node - 1)), OPERATIONS.index("sep_conv_5x5")] = 2.0
        normal[EDGES.index((to_node, to_node - 2)), OPERATIONS.index("max_pool_3x3")] = 1.0
    reduce = torch.zeros(len(EDGES), len(OPERATIONS))
    reduce[:, OPERATIONS.index("none")] = 5.0
    reduce[:, OPERATIONS.index("skip_connect")] = 1.0

    genotype = derive_genotype(normal, reduce)
    assert genotype.normal == (("dil_conv_5x5", 1), ("skip_connect", 0),
                               ("avg_pool_3x3", 2), ("sep_conv_3x3", 1),
                               ("sep_conv_5x5", 3), ("max_pool_3x3", 2),
                               ("sep_conv_5x5", 4), ("max_pool_3x3", 3))
    # All edges tie: the earliest two inputs of each node, with the best non-none operation.
    assert genotype.reduce == tuple(("skip_connect", source) for _ in range(4) for source in (0, 1))
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)


def test_the_genotype_string_is_darts_own_form_and_round_trips() -> None:
    genotype = Genotype.parse(DARTS_V2)
    assert str(genotype) == DARTS_V2
    assert genotype.normal[7] == ("dil_conv_3x3", 2) and genotype.reduce_concat == (2, 3, 4, 5)
    derived = derive_genotype(torch.randn(14, 8), torch.randn(14, 8))
    assert Genotype.parse(str(derived)) == derived


@pytest.mark.parametrize(("text", "message"), [
    ("Genotype(normal=[])", "must name exactly the fields"),
    ("__import__('os')", "is not of the form"),
    (DARTS_V2.replace("'sep_conv_3x3', 0", "'conv_7x7', 0", 1), "unknown operation 'conv_7x7'"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "node 5 takes input 5"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[1, 2]"), "normal_concat [1, 2]"),
])
def test_a_malformed_genotype_string_is_named_in_the_error(text: str, message: str) -> None:
    with pytest.raises(GenotypeError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Genotype.parse(text)


@pytest.fixture(scope="module")
def darts_searches() -> dict[str, _Search]:
    torch.set_num_threads(1)
    train, val = split_train_val(load_dataset("digits").train, seed=0, subset=64)
    return {method: _Search(SearchConfig(space="darts", method=method, dataset="digits", channels=2, layers=3,
                                         batch_size=8, neumann_terms=1, solver_max_iter=2), train, val)
            for method in GRADIENT_METHODS}


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_every_method_gives_both_alphas_a_finite_gradient(method: str, darts_searches: dict[str, _Search]) -> None:
    search = darts_searches[method]
    search.weight_step(search.train_stream())
    before = {name: alpha.detach().clone() for name, alpha in search.alphas.items()}
    search.arch_step(0.025, search.train_stream())
    for name, alpha in search.alphas.items():
        assert alpha.grad is not None and alpha.grad.shape == (14, 8)
        assert torch.isfinite(alpha.grad).all() and alpha.grad.abs().sum() > 0, name
        assert not torch.equal(alpha.detach(), before[name])  # the Adam step moved it


def test_a_tiny_darts_search_writes_a_genotype_and_resumes(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "darts"
    assert search_cli([*TINY_DARTS, "--method", "darts-1st", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    genotype = Genotype.parse(result["arch"])
    assert result["space"] == "darts" and result["arch"] == str(genotype) and "benchmark" not in result
    assert set(result["alpha"]) == set(ALPHA_NAMES) and torch.tensor(result["alpha"]["alpha_reduce"]).shape == (14, 8)
    assert result["edges"] == 28 and (out / CHECKPOINT).is_file()
    assert result["arch"] in capsys.readouterr().out

    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    assert checkpoint["config"]["space"] == "darts" and checkpoint["config"]["layers"] == 3
    checkpoint["config"]["epochs"] = 2  # resuming a finished search with one more epoch to run
    torch.save(checkpoint, out / CHECKPOINT)
    assert search_cli(["--resume", str(out), "--no-progress"]) == 0
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["space"] == "darts" and resumed["epochs"] == 2
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    Genotype.parse(resumed["arch"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--space", "nas301"], "invalid choice: 'nas301'"),
    (["--space", "darts", "--layers", "2"], "layers = 2; expected an integer >= 3"),
    (["--space", "darts", "--cells-per-stage", "2"], "--cells-per-stage applies to --space nb201"),
    (["--layers", "5"], "--layers applies to --space darts"),
])
def test_bad_space_options_exit_2_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse exits itself; run_cli returns the status
        raise SystemExit(search_cli([*argv, "--out", str(tmp_path), "--no-progress"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
