"""The search stabilisers: β-decay, Dirichlet mixing and perturbation-based selection.

Each is checked against an answer known without the code under test: the closed-form gradient of
logsumexp, autograd through torch's own Gamma sampler and the Dirichlet mean's closed form, and a
planted problem whose useful operations are known by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from applications.nas.commands.search import build_parser, config_from_args
from applications.nas.commands.search import cli as search_cli
from applications.nas.common.data import load_dataset, split_train_val
from applications.nas.searching.config import SearchConfig, SearchConfigError
from applications.nas.searching.loop import SearchState, _Search, run_search
from applications.nas.searching.selection import clear_decisions, perturbation_select
from applications.nas.searching.stabilisers import (
    DirichletMixing,
    beta_decay_penalty,
    beta_decay_weight,
    dirichlet_concentration,
    dirichlet_kl_penalty,
)
from applications.nas.spaces.nb201.genotype import OPERATIONS, Cell

pytestmark = pytest.mark.float32


# β-decay


def test_beta_decay_gradient_is_softmax_over_the_number_of_edges() -> None:
    generator = torch.Generator().manual_seed(0)
    alphas = {"alpha_normal": torch.randn(14, 8, generator=generator, dtype=torch.float64, requires_grad=True),
              "alpha_reduce": torch.randn(14, 8, generator=generator, dtype=torch.float64, requires_grad=True)}
    grads = torch.autograd.grad(beta_decay_penalty(alphas), list(alphas.values()))
    for grad, alpha in zip(grads, alphas.values()):
        torch.testing.assert_close(grad, torch.softmax(alpha.detach(), dim=-1) / 28, rtol=1e-12, atol=0)


def test_beta_decay_ramps_linearly_from_zero() -> None:
    assert [beta_decay_weight(50.0, epoch, 10) for epoch in (0, 5, 9)] == [0.0, 25.0, 45.0]


def _tiny_config(**changes: object) -> SearchConfig:
    values = dict(dataset="digits", train_subset=96, batch_size=16, channels=2, cells_per_stage=1, epochs=2,
                  solver_max_iter=3, alpha_lr=0.05, seed=1)
    values.update(changes)
    return SearchConfig(**values)  # type: ignore[arg-type]


def _search(config: SearchConfig) -> _Search:
    data = load_dataset(config.dataset)
    train, val = split_train_val(data.train, config.seed, config.train_subset)
    return _Search(config, train, val)


@pytest.mark.parametrize("method", ["darts-1st", "implicit-cg"])
def test_beta_decay_adds_exactly_its_gradient_to_the_architecture_step(method: str) -> None:
    """Same state, same batches: α's gradient with λ minus without it is λ·softmax(α_e)/|E| (any method)."""
    grads = []
    for strength in (0.0, 7.0):
        search = _search(_tiny_config(method=method, beta_decay=strength))
        search.beta_weight = strength
        batch = search.train_stream()
        search.weight_step(batch)
        search.a_opt.step = lambda: None  # keep α where it is, read its gradient
        search.arch_step(0.025, batch)
        grads.append(search.alpha.grad.clone())
        alpha = search.alpha.detach().clone()
    torch.testing.assert_close(grads[1] - grads[0], 7.0 * torch.softmax(alpha, dim=-1) / 6, rtol=1e-4, atol=1e-6)


# Dirichlet mixing


def test_dirichlet_sample_and_its_gradient_equal_autograd_through_torch_gamma_sampler() -> None:
    """The held sample is torch's Gamma draw, and the surrogate's derivative is torch's implicit gradient."""
    alpha = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    draws = torch._standard_gamma(dirichlet_concentration(alpha), generator=torch.Generator().manual_seed(3))
    reference = draws / draws.sum(dim=-1, keepdim=True)
    (expected,) = torch.autograd.grad((reference * weights).sum(), alpha)

    mixing = DirichletMixing(torch.Generator().manual_seed(3))
    mixing.resample({"alpha": alpha})
    theta = mixing("alpha", alpha)
    (got,) = torch.autograd.grad((theta * weights).sum(), alpha)
    torch.testing.assert_close(theta, reference.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_dirichlet_pathwise_gradient_is_unbiased_for_the_mean() -> None:
    """E[∂(c·θ)/∂α] over many samples = ∂(c·E[θ])/∂α, with E[θ] = a / Σa in closed form."""
    alpha = torch.tensor([[0.3, -0.7, 1.2, 0.0]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    n = 200_000
    many = alpha.expand(n, 4)
    mixing = DirichletMixing(torch.Generator().manual_seed(0))
    mixing.resample({"alpha": many})
    (estimate,) = torch.autograd.grad((mixing("alpha", many) @ c).mean(), alpha)
    a = dirichlet_concentration(alpha)
    (exact,) = torch.autograd.grad((a / a.sum()) @ c, alpha)
    torch.testing.assert_close(estimate, exact, rtol=0.03, atol=3e-3)


def test_dirichlet_sample_is_held_until_resampled_and_expected_mode_is_the_mean() -> None:
    alpha = torch.zeros(6, 5)
    mixing = DirichletMixing(torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="resample"):
        mixing("alpha", alpha)
    mixing.resample({"alpha": alpha})
    first = mixing("alpha", alpha)
    assert torch.equal(first, mixing("alpha", alpha))
    torch.testing.assert_close(first.sum(dim=-1), torch.ones(6))
    mixing.resample({"alpha": alpha})
    assert not torch.equal(first, mixing("alpha", alpha))
    mixing.expected = True
    torch.testing.assert_close(mixing("alpha", torch.tensor([[0.0, 1.0, -1.0]])),
                               torch.tensor([[1.0, 2.0, torch.exp(torch.tensor(-1.0))]]) / (3 + torch.exp(torch.tensor(-1.0))))


def test_dirichlet_kl_is_zero_at_the_flat_prior_and_positive_elsewhere() -> None:
    assert float(dirichlet_kl_penalty({"alpha": torch.zeros(6, 5)})) == pytest.approx(0.0, abs=1e-6)
    assert float(dirichlet_kl_penalty({"alpha": torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])})) > 0.01


def test_a_dirichlet_search_resumes_to_the_result_of_an_uninterrupted_one(tmp_path: Path) -> None:
    config = _tiny_config(method="darts-1st", dirichlet=True, epochs=3)
    whole = run_search(config, tmp_path / "whole", progress=False)

    class Interrupted(Exception):
        pass

    def stop(epoch: int, state: SearchState) -> None:
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_search(config, tmp_path / "cut", progress=False, on_epoch_end=stop)
    resumed = run_search(config, tmp_path / "cut", resume=True, progress=False)
    assert torch.equal(whole.alphas["alpha"], resumed.alphas["alpha"])


# Perturbation-based selection


def _planted_problem() -> tuple[torch.Tensor, object, list[int], list[int]]:
    """Three edges of five operations; per edge one operation carries the labels' signal (planted),
    another gets the largest mixing weight but only adds noise (the distractor)."""
    generator = torch.Generator().manual_seed(0)
    edges, ops, n, d, classes = 3, 5, 2000, 10, 4
    x = torch.randn(n, d, generator=generator)
    truth = torch.randn(d, classes, generator=generator)
    y = (x @ truth).argmax(dim=1)
    planted, distractor = [3, 1, 4], [2, 3, 1]
    maps = torch.randn(edges, ops, d, classes, generator=generator)
    maps[:, 0] = 0  # column 0 is `none`: no output
    for e in range(edges):
        maps[e, planted[e]] = truth
    weights = torch.full((edges, ops), 0.1)
    for e in range(edges):
        weights[e, distractor[e]] = 0.5
        weights[e, planted[e]] = 0.2

    def correct(w: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("nd,eodc,eo->nc", x, maps, w)
        return logits.argmax(dim=1) == y

    return weights, correct, planted, distractor


def test_perturbation_picks_the_planted_operation_where_argmax_picks_the_distractor() -> None:
    weights, accuracy, planted, distractor = _planted_problem()
    assert weights.argmax(dim=1).tolist() == distractor
    tuned: list[torch.Tensor] = []
    chosen, records = perturbation_select(weights, accuracy, [2, 0, 1], tune=lambda w: tuned.append(w.clone()))
    assert chosen.argmax(dim=1).tolist() == planted
    assert torch.equal(chosen.sum(dim=1), torch.ones(3)) and set(chosen.unique().tolist()) == {0.0, 1.0}
    assert [r["edge"] for r in records] == [2, 0, 1]
    for record in records:
        assert record["drops"][0] == 0.0  # masking `none` changes nothing
        assert record["choice"] == planted[record["edge"]]
    # Fine-tuning after every edge but the last, seeing the edges decided so far as one-hot rows.
    assert len(tuned) == 2
    assert tuned[0][2].tolist() == [1.0 if k == planted[2] else 0.0 for k in range(5)]
    assert torch.equal(tuned[0][0], weights[0])


def test_perturbation_skips_measuring_inert_operations() -> None:
    weights, accuracy, planted, _ = _planted_problem()
    calls: list[torch.Tensor] = []

    def counted(w: torch.Tensor) -> torch.Tensor:
        calls.append(w)
        return accuracy(w)

    chosen, records = perturbation_select(weights, counted, [0, 1, 2], inert_columns=(0,))
    assert chosen.argmax(dim=1).tolist() == planted
    assert len(calls) == 3 * (1 + 4)  # per edge: the unmasked supernet and the four operations that have an output
    assert all(r["drops"][0] == 0.0 for r in records)


def test_perturbation_margins_are_the_paired_standard_error_of_the_two_best_drops() -> None:
    weights, correct, planted, _ = _planted_problem()
    chosen, records = perturbation_select(weights, correct, [0, 1, 2], inert_columns=(0,))
    current = weights.clone()
    for record in records:
        edge, choice, runner = record["edge"], record["choice"], record["runner_up"]
        assert runner == max((k for k in range(5) if k != choice), key=lambda k: (record["drops"][k], -k))
        assert record["margin"] == pytest.approx(record["drops"][choice] - record["drops"][runner], abs=1e-12)
        masked_choice, masked_runner = current.clone(), current.clone()
        masked_choice[edge, choice] = 0
        if runner != 0:  # masking `none` leaves the supernet as it is
            masked_runner[edge, runner] = 0
        a, b = correct(masked_choice), correct(masked_runner)
        # McNemar's counts: images only the runner-up's masking keeps right, and only the choice's.
        n, gained, lost = len(a), int((b & ~a).sum()), int((a & ~b).sum())
        variance = ((gained + lost) / n - ((gained - lost) / n) ** 2) * n / (n - 1)
        assert record["margin"] == pytest.approx((gained - lost) / n, abs=1e-12)
        assert record["margin_se"] == pytest.approx((variance / n) ** 0.5, rel=1e-5)
        current[edge] = 0
        current[edge, choice] = 1
    # The first two edges are decided by many standard errors. By the last edge the two planted operations
    # already fixed carry most of the signal, so masking its own planted operation costs little (0.007 against
    # the runner-up's 0.002): a margin within two standard errors, reported as a near tie.
    assert [clear_decisions([r]) for r in records] == [1, 1, 0]
    assert records[0]["margin"] > 10 * records[0]["margin_se"] and records[2]["margin"] < 2 * records[2]["margin_se"]


def test_perturbation_calls_a_tie_between_identical_operations_unclear() -> None:
    weights, correct, planted, _ = _planted_problem()

    def twin(w: torch.Tensor) -> torch.Tensor:  # column 2 of edge 0 is a copy of its planted column 3
        merged = w.clone()
        merged[0, 3] = w[0, 2] + w[0, 3]
        merged[0, 2] = 0
        return correct(merged)

    twinned = weights.clone()
    twinned[0, 2] = twinned[0, 3] = 0.15
    _, records = perturbation_select(twinned, twin, [0, 1, 2], inert_columns=(0,))
    edge0 = next(r for r in records if r["edge"] == 0)
    assert {edge0["choice"], edge0["runner_up"]} == {2, 3}
    assert edge0["margin"] == 0 and edge0["margin_se"] == 0
    assert clear_decisions([edge0]) == 0 and clear_decisions(records[1:2]) == 1  # the twins tie; edge 1 stays clear


def test_perturbation_gives_a_near_tie_to_the_preferred_operations_and_keeps_clear_decisions() -> None:
    weights, correct, planted, _ = _planted_problem()  # planted columns 3, 1, 4 on edges 0, 1, 2
    parametric = (2, 3)  # nor_conv_1x1, nor_conv_3x3 in the order of OPERATIONS
    plain, plain_records = perturbation_select(weights, correct, [0, 1, 2], inert_columns=(0,))
    chosen, records = perturbation_select(weights, correct, [0, 1, 2], inert_columns=(0,), preferred=parametric)
    # Edge 0's planted column is preferred anyway; edge 1's planted skip_connect wins by many errors and stays.
    assert [r["choice"] for r in records[:2]] == [3, 1] and not any(r["tie_broken"] for r in records[:2])
    # Edge 2's planted avg_pool_3x3 beat nor_conv_3x3 by 0.005, within two paired errors: the tie goes over.
    last = plain_records[2]
    assert last["choice"] == 4 and last["runner_up"] == 3 and last["margin"] < 2 * last["margin_se"]
    assert records[2]["choice"] == 3 and records[2]["tie_broken"] and not records[2]["capped"]
    assert records[2]["drops"] == last["drops"]  # the same measurements, decided otherwise
    assert records[2]["runner_up"] == 4 and records[2]["margin"] == pytest.approx(-last["margin"], abs=1e-12)
    assert clear_decisions(records) == 2  # a decision against the largest drop is never counted as clear
    assert torch.equal(chosen[:2], plain[:2])
    # With a stricter idea of a tie (z = 1) edge 2's margin is no tie: the largest drop wins.
    strict, _ = perturbation_select(weights, correct, [0, 1, 2], inert_columns=(0,), preferred=parametric, tie_z=1.0)
    assert torch.equal(strict, plain)


def test_perturbation_refuses_an_order_that_is_not_a_set_of_edges() -> None:
    weights, accuracy, _, _ = _planted_problem()
    with pytest.raises(ValueError, match="distinct edges"):
        perturbation_select(weights, accuracy, [0, 0, 1])
    with pytest.raises(ValueError, match="distinct edges"):
        perturbation_select(weights, accuracy, [0, 3])


def test_a_search_with_perturbation_selection_reports_both_cells(tmp_path: Path, tiny_search: list[str]) -> None:
    out = tmp_path / "pt"
    assert search_cli([*tiny_search, "--method", "darts-1st", "--beta-decay", "50", "--dirichlet",
                       "--selection", "pt", "--pt-tune-steps", "2", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["arch"] == result["arch_pt"] == result["perturbation"]["arch"]
    assert result["derivation"] == "perturbation (DARTS-PT)"
    Cell.parse(result["arch_argmax"])
    assert sorted(result["perturbation"]["order"]) == list(range(6))
    assert [len(r["drops"]) for r in result["perturbation"]["edges"]] == [5] * 6
    edges = result["perturbation"]["edges"]
    assert all(r["margin_se"] >= 0 and r["margin"] >= 0 for r in edges)  # the chosen drop is the largest
    assert result["perturbation"]["clear_edges"] == clear_decisions(edges)
    assert result["config"]["beta_decay"] == 50 and result["config"]["dirichlet"] is True
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["beta_weight"] for r in log] == [0.0, 25.0]


def test_perturbation_selection_needs_an_nb201_gradient_search() -> None:
    with pytest.raises(SearchConfigError, match="selection pt"):
        SearchConfig(space="darts", selection="pt")
    with pytest.raises(SearchConfigError, match="selection pt"):
        SearchConfig(method="random-ws", selection="pt")
    with pytest.raises(SearchConfigError, match="selection"):
        config_from_args(build_parser().parse_args(["--out", "x", "--pt-tune-steps", "0", "--selection", "pt",
                                                    "--space", "darts"]))


def test_fixed_alpha_trains_the_weights_only_and_chooses_by_perturbation(tmp_path: Path, tiny_search: list[str]) -> None:
    out = tmp_path / "fixed"
    assert search_cli([*tiny_search, "--method", "fixed-alpha", "--selection", "pt", "--pt-tune-steps", "1",
                       "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    config = SearchConfig(**{**result["config"], "epochs": 2})
    start = _search(config).alpha.detach()
    assert torch.equal(torch.tensor(result["alpha"]), start)  # α never moved
    assert result["arch"] == result["arch_pt"]


def test_perturbation_cap_turns_the_edges_after_the_cap_to_their_best_capped_out_alternative() -> None:
    weights, accuracy, planted, _ = _planted_problem()  # planted columns 3, 1, 4 on edges 0, 1, 2
    capped = (0, 1, 4)  # none, skip_connect, avg_pool_3x3 in the order of OPERATIONS
    free, _ = perturbation_select(weights, accuracy, [1, 2, 0], inert_columns=(0,))
    assert free.argmax(dim=1).tolist() == planted  # uncapped: edges 1 and 2 take a capped column
    chosen, records = perturbation_select(weights, accuracy, [1, 2, 0], inert_columns=(0,), capped=capped, cap=1)
    by_edge = {r["edge"]: r for r in records}
    assert by_edge[1]["choice"] == 1 and not by_edge[1]["capped"]  # the first capped choice is allowed
    # Edge 2's planted column (4) is capped out: it takes the best drop among the uncapped columns 2 and 3.
    drops = by_edge[2]["drops"]
    assert by_edge[2]["capped"] and by_edge[2]["choice"] == max((2, 3), key=lambda k: (drops[k], -k))
    assert max(range(5), key=lambda k: drops[k]) == 4  # its measured drops still name the planted column
    assert by_edge[0]["choice"] == 3 and not by_edge[0]["capped"]  # an uncapped choice is unaffected
    assert sum(int(chosen[e].argmax()) in capped for e in range(3)) == 1
    zero, _ = perturbation_select(weights, accuracy, [1, 2, 0], capped=capped, cap=0)
    assert all(int(k) not in capped for k in zero.argmax(dim=1))
    wide, _ = perturbation_select(weights, accuracy, [1, 2, 0], capped=capped, cap=3)
    assert torch.equal(wide, free)  # a cap the cell never reaches changes nothing


def test_perturbation_cap_refuses_a_cap_that_leaves_an_edge_no_choice() -> None:
    weights, accuracy, _, _ = _planted_problem()
    with pytest.raises(ValueError, match="fewer capped columns"):
        perturbation_select(weights, accuracy, [0, 1, 2], capped=range(5), cap=1)
    with pytest.raises(ValueError, match="cap -1"):
        perturbation_select(weights, accuracy, [0, 1, 2], capped=(0,), cap=-1)
    with pytest.raises(SearchConfigError, match="pt_max_param_free = 7"):
        SearchConfig(selection="pt", pt_max_param_free=7)
    with pytest.raises(SearchConfigError, match="pt_ties = 'conv'; expected one of drop, parametric"):
        SearchConfig(selection="pt", pt_ties="conv")


def test_reselect_repeats_the_selection_of_a_finished_search_and_applies_new_options(
        tmp_path: Path, tiny_search: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "search"
    assert search_cli([*tiny_search, "--method", "darts-1st", "--selection", "pt", "--pt-tune-steps", "2",
                       "--out", str(source)]) == 0
    original = json.loads((source / "result.json").read_text())
    checkpoint_bytes = (source / "checkpoint.pt").read_bytes()
    again = tmp_path / "again"
    capsys.readouterr()
    assert search_cli(["--reselect", str(source), "--out", str(again), "--no-progress"]) == 0
    # The search's own selection options, kept because none was given, are named.
    assert (f"note: --reselect keeps {source}'s own --pt-tune-steps 2, --pt-val-images all, no --pt-max-param-free, "
            "--pt-ties drop") in capsys.readouterr().err
    repeated = json.loads((again / "result.json").read_text())
    # The same settings on the same final checkpoint: the same cell, by the same measurements.
    assert repeated["arch"] == original["arch"]
    assert repeated["perturbation"]["edges"] == original["perturbation"]["edges"]
    assert repeated["alpha"] == original["alpha"] and repeated["wall_time_s"] == original["wall_time_s"]
    capped = tmp_path / "capped"
    capsys.readouterr()
    assert search_cli(["--reselect", str(source), "--out", str(capped), "--no-progress", "--pt-max-param-free", "0",
                       "--pt-val-images", "all", "--pt-tune-steps", "1"]) == 0
    assert "(at most 0 parameter-free edges: " in capsys.readouterr().out
    result = json.loads((capped / "result.json").read_text())
    assert result["config"]["pt_max_param_free"] == 0 and result["config"]["pt_val_images"] is None
    assert result["perturbation"]["tune_steps"] == 1 and result["perturbation"]["max_param_free"] == 0
    assert not {op for op in Cell.parse(result["arch"]).ops} & {"none", "skip_connect", "avg_pool_3x3"}
    tied = tmp_path / "tied"
    assert search_cli(["--reselect", str(source), "--out", str(tied), "--no-progress", "--pt-ties", "parametric"]) == 0
    printed = capsys.readouterr().out
    assert "(near ties go to the convolutions: " in printed
    clear = json.loads((tied / "result.json").read_text())["perturbation"]["clear_edges"]
    assert f"({clear} of 6 edges decided by more than twice the standard error of their margin" in printed
    result = json.loads((tied / "result.json").read_text())
    assert result["config"]["pt_ties"] == "parametric" and result["perturbation"]["ties"] == "parametric"
    for record in result["perturbation"]["edges"]:  # a turned edge took a convolution within two errors of the best
        if record["tie_broken"]:
            assert OPERATIONS[record["choice"]] in ("nor_conv_1x1", "nor_conv_3x3")
            assert -record["margin"] <= 2 * record["margin_se"]
    assert (source / "checkpoint.pt").read_bytes() == checkpoint_bytes  # the source is never changed


def test_reselect_refuses_what_it_cannot_do(tmp_path: Path, tiny_search: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "search"
    assert search_cli([*tiny_search, "--method", "darts-1st", "--out", str(source)]) == 0
    capsys.readouterr()
    cases = [
        (["--reselect", str(source)], "--out DIR is required"),
        (["--reselect", str(source), "--out", str(source)], "is the --reselect folder"),
        (["--reselect", str(source), "--out", str(tmp_path / "o"), "--epochs", "3"], "--epochs cannot change"),
        (["--reselect", str(source), "--out", str(tmp_path / "o"), "--resume", str(source)], "exclude each other"),
    ]
    for argv, message in cases:
        try:
            status = search_cli(argv)
        except SystemExit as stop:  # the parser's own errors
            status = stop.code
        assert status == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    log = (source / "log.jsonl").read_text().splitlines()
    (source / "log.jsonl").write_text(log[0] + "\n")
    import applications.nas.searching.loop as loop
    checkpoint = loop.load_checkpoint(source)
    checkpoint["epochs_done"] = 1
    torch.save(checkpoint, source / "checkpoint.pt")
    assert search_cli(["--reselect", str(source), "--out", str(tmp_path / "o")]) == 2
    assert "stopped after epoch 1 of 2" in capsys.readouterr().err
