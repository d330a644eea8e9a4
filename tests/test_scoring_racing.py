"""Racing: its contenders get the full exact scan's values, decisions follow the bounds, resume works."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from scipy import stats

from dps_lens.cli import main
from dps_lens.data import write_jsonl
from dps_lens.organism.world import World
from dps_lens.plots import pcs_heatmap
from dps_lens.scoring import HeadScores, ScanConfig, fewest_race_evaluations, score_heads
from dps_lens.scoring.head_scores import IN, OUT, UNDECIDED
from dps_lens.scoring.race_bounds import t_bounds as bounds
from dps_lens.scoring.racing import decide, race_rounds
from tests.helpers import discover_args, interrupted_scan

PLANTED = {(1, 1), (1, 3), (2, 2)}


@pytest.fixture(scope="module")
def discovery():
    return World().split_examples("discovery", 24, queries_per_user=2)


@pytest.fixture(scope="module")
def full(planted, discovery):
    return score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False)


def test_rounds_are_a_seeded_partition_doubling_the_examples_seen():
    rounds = race_rounds(21, 8, seed=3)
    assert [len(r) for r in rounds] == [8, 8, 5]
    assert [len(r) for r in race_rounds(64, 8, seed=0)] == [8, 8, 16, 32]
    assert sorted(i for r in rounds for i in r) == list(range(21))
    assert rounds == race_rounds(21, 8, seed=3) != race_rounds(21, 8, seed=4)


def test_bounds_are_student_t_intervals_over_each_heads_scored_examples():
    values = torch.tensor([[1.0, 5.0], [2.0, float("nan")], [4.0, 7.0], [3.0, 6.0]]).reshape(
        4, 1, 2
    )
    low, high = bounds(values, level=0.9)
    for head, column in enumerate([[1.0, 2.0, 4.0, 3.0], [5.0, 7.0, 6.0]]):
        interval = stats.t.interval(
            0.9, len(column) - 1, loc=stats.tmean(column), scale=stats.sem(column)
        )
        assert (float(low[0, head]), float(high[0, head])) == pytest.approx(interval, rel=1e-5)
    low, high = bounds(values[:1], level=0.9)
    assert torch.isinf(low).all() and torch.isinf(high).all()  # one example bounds nothing


def test_decisions_follow_the_kth_bounds():
    heads = [(0, h) for h in range(4)]
    low = torch.tensor([[5.0, 0.0, 2.9, -1.0]])
    high = torch.tensor([[6.0, 3.0, 4.0, 0.5]])
    status = dict.fromkeys(heads, UNDECIDED)
    decide(status, low, high, k=2)  # 2nd largest low = 2.9; 3rd largest high = 3.0
    assert status == {(0, 0): IN, (0, 1): UNDECIDED, (0, 2): UNDECIDED, (0, 3): OUT}
    few = dict.fromkeys(heads[:2], UNDECIDED)
    decide(few, low, high, k=2)
    assert set(few.values()) == {IN}


def test_an_indifference_zone_compares_a_head_with_the_other_heads_bounds():
    heads = [(0, 0), (0, 1), (0, 2)]
    # the best head has a narrow interval: against its own lower bound it would call itself out
    low, high = torch.tensor([[0.95, 0.5, -1.0]]), torch.tensor([[1.05, 1.5, -0.8]])
    status = dict.fromkeys(heads, UNDECIDED)
    decide(status, low, high, k=1, epsilon=0.2)
    assert status == {(0, 0): UNDECIDED, (0, 1): UNDECIDED, (0, 2): OUT}
    wide = dict.fromkeys(heads, UNDECIDED)
    decide(wide, low, high, k=1, epsilon=0.6)  # each within 0.6 of the other's bound: decided
    assert wide == {(0, 0): IN, (0, 1): OUT, (0, 2): OUT}
    huge = dict.fromkeys(heads, UNDECIDED)
    decide(huge, low, high, k=2, epsilon=10.0)  # every head within ε: still K in, the rest out
    assert huge == {(0, 0): IN, (0, 1): IN, (0, 2): OUT}


def test_the_fewest_race_evaluations_follow_the_best_kth_lower_bound():
    generator = torch.Generator().manual_seed(0)
    n, winner = 64, torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    clear = winner + 0.01 * torch.randn(n, 1, 6, generator=generator)
    # the winner is a contender (every example); the others can go out at the first look
    assert fewest_race_evaluations(clear, k=1, delta=0.05, round_size=8) == n + 5 * 8
    # a winner by 0.1 against a spread of 0.3: the others need the later looks
    close = 0.1 * winner + 0.3 * torch.randn(n, 1, 6, generator=generator)
    floor = fewest_race_evaluations(close, k=1, delta=0.05, round_size=8)
    assert n + 5 * 8 < floor <= 6 * n
    # an indifference zone lets heads out sooner, but K heads stay contenders (every example)
    assert n + 5 * 8 < fewest_race_evaluations(close, 1, 0.05, 8, epsilon=0.5) < floor
    assert fewest_race_evaluations(close, 1, 0.05, 8, epsilon=0.01) <= floor
    assert fewest_race_evaluations(close, 1, 0.05, 8, epsilon=10.0) == n + 5 * 8
    assert fewest_race_evaluations(close, 2, 0.05, 8, epsilon=10.0) == 2 * n + 4 * 8
    noise = torch.randn(n, 1, 6, generator=generator)  # no gaps: no head can go out
    assert fewest_race_evaluations(noise, k=1, delta=0.05, round_size=8) == 6 * n
    assert fewest_race_evaluations(noise, k=6, delta=0.05, round_size=8) == 6 * n


@pytest.mark.parametrize("allocation", ["uniform", "boundary"])
@pytest.mark.parametrize("delta", [0.05, 0.9])
def test_contenders_get_the_full_exact_values_and_the_planted_heads_win(
    planted, discovery, full, delta, allocation
):
    config = ScanConfig(method="racing", k=3, delta=delta, round_size=6, batch_size=64,
                        race_allocation=allocation)  # fmt: skip
    race = score_heads(planted, discovery, config, progress=False)
    assert set(race.top_k(3)) == PLANTED
    assert race.status is not None
    contenders = [tuple(h) for h in torch.nonzero(race.status != OUT).tolist()]
    for layer, head in contenders:
        torch.testing.assert_close(
            race.per_example[:, layer, head], full.per_example[:, layer, head], atol=1e-5, rtol=0
        )
        assert float(race.mean[layer, head]) == pytest.approx(
            float(full.mean[layer, head]), abs=1e-6
        )
    scored = ~torch.isnan(race.per_example)
    torch.testing.assert_close(
        race.per_example[scored], full.per_example[scored], atol=1e-5, rtol=0
    )
    floor = fewest_race_evaluations(full.per_example, k=3, delta=delta, round_size=6)
    assert floor <= int(scored.sum())  # no race beats the floor of its own intervals
    rows = race.ranked()
    assert {row["status"] for row in rows[:3]} <= {"in", "undecided"}
    if (
        delta == 0.9
    ):  # a loose error rate decides heads early: fewer evaluations, out heads ranked last
        assert int(scored.sum()) < scored.numel()
        out_rows = [row for row in rows if row["status"] == "out"]
        assert out_rows and any(row["n"] < len(discovery) for row in out_rows)
        assert rows[-len(out_rows) :] == out_rows
        heatmap = pcs_heatmap(race).data[0]  # hover: each head's own n and its status
        first_out = out_rows[0]
        assert heatmap.text[first_out["layer"]][first_out["head"]] == ", out"
        assert heatmap.customdata[first_out["layer"]][first_out["head"]][3] == first_out["n"]


def test_the_boundary_allocation_spends_rounds_on_the_heads_that_set_the_bounds(
    planted, discovery, full
):
    cells = {}
    for allocation in ("uniform", "boundary"):
        config = ScanConfig(method="racing", k=3, round_size=6, batch_size=64,
                            race_allocation=allocation)  # fmt: skip
        race = score_heads(planted, discovery, config, progress=False)
        assert set(race.top_k(3)) == PLANTED
        cells[allocation] = int((~torch.isnan(race.per_example)).sum())
    floor = fewest_race_evaluations(full.per_example, k=3, delta=0.05, round_size=6)
    assert floor <= cells["boundary"] < cells["uniform"]


@pytest.mark.parametrize("allocation", ["uniform", "boundary"])
def test_racing_resumes_after_an_interruption(
    planted, discovery, tmp_path, monkeypatch, allocation
):
    config = ScanConfig(method="racing", k=3, delta=0.9, round_size=6, batch_size=16,
                        race_allocation=allocation)  # fmt: skip
    fresh = score_heads(planted, discovery, config, progress=False)
    interrupted_scan(planted, discovery, config, tmp_path, monkeypatch, after=12)
    resumed = score_heads(planted, discovery, config, checkpoint_dir=tmp_path, progress=False)
    torch.testing.assert_close(
        resumed.per_example, fresh.per_example, atol=1e-6, rtol=0, equal_nan=True
    )
    assert torch.equal(resumed.status, fresh.status)


@pytest.mark.parametrize("allocation", ["uniform", "boundary"])
def test_racing_through_the_cli_reports_status_and_n(discovery, tmp_path, allocation):
    data = tmp_path / "discovery.jsonl"
    write_jsonl(data, discovery)
    out = tmp_path / "run"
    args = discover_args("organism-planted", data, out, "--method", "racing", "--k", "3",
                         "--delta", "0.9", "--race-allocation", allocation)  # fmt: skip
    assert main(args) == 0
    assert HeadScores.load(out).config["race_allocation"] == allocation
    rows = list(csv.DictReader((out / "ranked.csv").open()))
    assert {"status", "n"} <= set(rows[0]) and {r["status"] for r in rows} >= {"in", "out"}
    assert {tuple(h) for h in json.loads((out / "top_k.json").read_text())["heads"]} == PLANTED
