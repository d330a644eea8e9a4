"""Prediction-powered racing: the PPI++ mean against ppi_py, its coverage with good and bad
predictors, the asymptotic confidence sequence's coverage under continuous monitoring, and
``ppi-racing`` on the planted organism (decisions, contenders, resume, the saved estimates)."""

from __future__ import annotations

import math

import jaxtyping
import numpy as np
import pytest
import torch

from dps_lens.cli import main
from dps_lens.data import write_jsonl
from dps_lens.errors import DpsLensError
from dps_lens.organism.world import World
from dps_lens.scoring import HeadScores, ScanConfig, fewest_race_evaluations, score_heads
from dps_lens.scoring.head_scores import IN, OUT
from dps_lens.scoring.ppi import ppi_mean
from dps_lens.scoring.race_bounds import asymptotic_cs_radius, race_bounds, t_bounds
from tests.helpers import discover_args, interrupted_scan

PLANTED = {(1, 1), (1, 3), (2, 2)}


def _labeled(exact: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``exact`` with all but a random ``n`` of its rows (per column) set to NaN."""
    keep = torch.rand(exact.shape, generator=generator).argsort(0) < n
    return torch.where(keep, exact, torch.full_like(exact, math.nan))


def test_the_ppi_mean_is_ppi_pys():
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(0)
    big_n, n = 300, 40
    predictions = rng.normal(size=(big_n, 3))
    exact = 0.6 * predictions + 0.2 + rng.normal(scale=0.7, size=(big_n, 3))
    labeled = rng.choice(big_n, n, replace=False)
    partial = np.full_like(exact, np.nan)
    partial[labeled] = exact[labeled]
    mine = ppi_mean(torch.tensor(partial), torch.tensor(predictions))
    low, high = mine.interval(0.1)
    for head in range(3):
        y, yhat = exact[labeled, head], predictions[labeled, head]
        unlabeled = np.delete(predictions[:, head], labeled)  # the examples without exact values
        theirs_low, theirs_high = ppi_py.ppi_mean_ci(y, yhat, unlabeled, alpha=0.1)
        point = ppi_py.ppi_mean_pointestimate(y, yhat, unlabeled)
        assert float(mine.estimate[head]) == pytest.approx(float(point[0]), rel=1e-9)
        assert (float(low[head]), float(high[head])) == pytest.approx(
            (float(theirs_low[0]), float(theirs_high[0])), rel=1e-9
        )
    fixed = ppi_mean(torch.tensor(partial), torch.tensor(predictions), lam=1.0)
    unlabeled = np.delete(predictions[:, 0], labeled)
    point = ppi_py.ppi_mean_pointestimate(
        exact[labeled, 0], predictions[labeled, 0], unlabeled, lam=1
    )
    assert float(fixed.estimate[0]) == pytest.approx(float(point[0]), rel=1e-9)


def test_lambda_zero_is_the_racing_estimate_and_interval():
    generator = torch.Generator().manual_seed(1)
    exact = _labeled(torch.randn(50, 2, 3, generator=generator), 12, generator)
    predictions = torch.randn(50, 2, 3, generator=generator)
    plain = ppi_mean(exact, predictions, lam=0.0, ddof=1)
    torch.testing.assert_close(plain.estimate, exact.nanmean(0).double())
    low, high = plain.interval(0.05, student=True)
    racing_low, racing_high = t_bounds(exact, level=0.95)
    torch.testing.assert_close(low.float(), racing_low, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(high.float(), racing_high, rtol=1e-5, atol=1e-6)


PREDICTORS = {
    "perfect": lambda e, noise: e,
    "biased": lambda e, noise: 0.5 * e + 2.0,
    "noisy": lambda e, noise: e + 1.5 * noise,
    "useless": lambda e, noise: noise,
}


@pytest.mark.parametrize("predictor", sorted(PREDICTORS))
def test_the_ppi_interval_covers_at_its_level_whatever_the_predictor(predictor):
    """2000 seeded replicates as 2000 'heads' at once: the 90% interval holds the true mean in
    about 90% of them (a binomial tolerance of 4 standard errors), and a good predictor narrows it."""
    generator = torch.Generator().manual_seed(7)
    replicates, big_n, n, mean = 2000, 200, 40, 0.3
    exact = mean + torch.randn(big_n, replicates, generator=generator, dtype=torch.float64)
    noise = torch.randn(big_n, replicates, generator=generator, dtype=torch.float64)
    predictions = PREDICTORS[predictor](exact, noise)
    estimate = ppi_mean(_labeled(exact, n, generator), predictions)
    low, high = estimate.interval(0.1)
    covered = float(((low <= mean) & (mean <= high)).double().mean())
    tolerance = 4 * math.sqrt(0.1 * 0.9 / replicates)
    assert abs(covered - 0.9) < tolerance + 0.01, covered  # + the normal approximation at n = 40
    classical = ppi_mean(_labeled(exact, n, generator), predictions, lam=0.0)
    ratio = float(estimate.stderr.mean() / classical.stderr.mean())
    assert ratio < 0.5 if predictor == "perfect" else ratio < 1.05  # never much wider


def test_the_confidence_sequence_holds_at_every_look():
    """Continuous monitoring: over 1000 replicates the true mean stays inside the sequence at
    every one of 40 looks in at least 1 − α of them, while a fixed-n interval checked at every
    look fails far more often."""
    generator = torch.Generator().manual_seed(3)
    replicates, steps, alpha = 1000, 400, 0.1
    values = torch.randn(steps, replicates, generator=generator, dtype=torch.float64)
    looks = range(10, steps + 1, 10)
    held_cs = torch.ones(replicates, dtype=torch.bool)
    held_fixed = torch.ones(replicates, dtype=torch.bool)
    for t in looks:
        seen = values[:t]
        mean, sd = seen.mean(0), seen.std(0)
        radius = asymptotic_cs_radius(sd, torch.full_like(sd, t), alpha, t_opt=100.0)
        held_cs &= (mean - radius <= 0) & (mean + radius >= 0)
        held_fixed &= mean.abs() <= 1.645 * sd / math.sqrt(t)
    assert float(held_cs.double().mean()) >= 1 - alpha - 0.03
    assert float(held_fixed.double().mean()) < 0.75  # peeking breaks the fixed-n interval


@pytest.fixture(scope="module")
def discovery():
    return World().split_examples("discovery", 32, queries_per_user=2)


@pytest.fixture(scope="module")
def full(planted, discovery):
    return score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False)


@pytest.mark.parametrize("bounds", ["t-union", "asymptotic-cs"])
@pytest.mark.parametrize("allocation", ["uniform", "lucb"])
def test_ppi_racing_never_contradicts_the_exact_ranking(
    planted, discovery, full, bounds, allocation
):
    config = ScanConfig(
        method="ppi-racing", k=3, bounds=bounds, race_allocation=allocation, batch_size=32
    )
    raced = score_heads(planted, discovery, config, progress=False)
    exact_top = set(full.top_k(3))
    assert exact_top == PLANTED
    status = raced.status
    assert status is not None and raced.predictions is not None
    decided_in = {(int(l), int(h)) for l, h in torch.nonzero(status == IN)}
    decided_out = {(int(l), int(h)) for l, h in torch.nonzero(status == OUT)}
    assert decided_in <= exact_top and not decided_out & exact_top
    for head in exact_top:  # contenders carry the full exact scan's values
        torch.testing.assert_close(
            raced.per_example[:, head[0], head[1]], full.per_example[:, head[0], head[1]]
        )
    assert set(raced.top_k(3)) == PLANTED
    row = raced.ranked()[0]
    assert {
        "n_predicted",
        "lambda",
        "ppi",
        "ppi_ci_low",
        "ppi_ci_high",
        "race_low",
        "status",
    } <= set(row)
    assert row["n_predicted"] == len(discovery) and 0.0 <= row["lambda"] <= 1.0


def test_ppi_racing_saves_reloads_and_resumes(planted, discovery, tmp_path, monkeypatch):
    config = ScanConfig(method="ppi-racing", k=3, batch_size=16)
    interrupted_scan(planted, discovery, config, tmp_path / "run", monkeypatch, after=3)
    resumed = score_heads(
        planted, discovery, config, checkpoint_dir=tmp_path / "run", progress=False
    )
    fresh = score_heads(planted, discovery, config, progress=False)
    torch.testing.assert_close(resumed.per_example, fresh.per_example, equal_nan=True)
    assert resumed.predictions is not None and fresh.predictions is not None
    torch.testing.assert_close(resumed.predictions, fresh.predictions)
    resumed.save(tmp_path / "saved")
    loaded = HeadScores.load(tmp_path / "saved")
    assert loaded.predictions is not None and loaded.race_bounds is not None
    assert loaded.ranked() == resumed.ranked()


def test_the_floor_of_a_prediction_powered_race(full):
    predictions = full.per_example + 0.01 * torch.randn_like(full.per_example)
    plain = fewest_race_evaluations(full.per_example, 3, 0.05, 8)
    powered = fewest_race_evaluations(full.per_example, 3, 0.05, 8, predictions=predictions)
    assert powered <= plain <= full.per_example.numel()
    sequence = fewest_race_evaluations(full.per_example, 3, 0.05, 8, bounds="asymptotic-cs")
    assert sequence <= full.per_example.numel()


def test_an_indifference_zone_decides_more_heads(planted, discovery):
    strict = score_heads(
        planted, discovery, ScanConfig(method="ppi-racing", k=3, batch_size=32), progress=False
    )
    loose = score_heads(
        planted,
        discovery,
        ScanConfig(method="ppi-racing", k=3, epsilon="50%", batch_size=32),
        progress=False,
    )
    assert strict.status is not None and loose.status is not None
    decided = lambda s: int((s != 0).sum())  # noqa: E731
    assert decided(loose.status) >= decided(strict.status)
    assert (loose.status == IN).sum() <= 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method": "ppi-racing", "delta": 0.0}, "delta must be > 0"),
        ({"method": "ppi-racing", "delta": float("nan")}, "finite"),
        ({"method": "ppi-racing", "epsilon": "a lot"}, "--epsilon takes nats"),
        ({"method": "ppi-racing", "epsilon": "-1"}, "--epsilon must be >= 0"),
    ],
)
def test_bad_race_settings_are_one_readable_error(config, message):
    with pytest.raises(DpsLensError, match=message):
        ScanConfig(**config)


def test_ppi_racing_refuses_what_it_cannot_do(planted, discovery):
    with pytest.raises(DpsLensError, match="at least one round of 8 examples"):
        score_heads(planted, discovery[:5], ScanConfig(method="ppi-racing", k=2), progress=False)
    with pytest.raises(DpsLensError, match="attribution scores support modes"):
        score_heads(
            planted, discovery, ScanConfig(method="ppi-racing", mode="uniform"), progress=False
        )
    with pytest.raises(DpsLensError, match="unknown bounds"):
        race_bounds("hoeffding")


def test_ppi_racing_from_the_command_line(discovery, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, discovery)
    out = tmp_path / "run"
    args = discover_args("organism-planted", data, out, "--method", "ppi-racing", "--k", "3",
                         "--bounds", "asymptotic-cs", "--contrast", "no-profile", "--select", "specific")  # fmt: skip
    assert main(args) == 0
    header = (out / "ranked.csv").read_text().splitlines()[0].split(",")
    assert {"lambda", "ppi", "n_predicted", "status"} <= set(header)
    assert main(discover_args("organism-planted", data, tmp_path / "x", "--method", "ppi-racing",
                              "--round-size", "200")) == 2  # fmt: skip
    assert "at least one round" in capsys.readouterr().err


@pytest.mark.parametrize("allocation", ["uniform", "lucb"])
def test_the_benchmarks_replay_decides_and_scores_as_the_race(
    planted, discovery, full, allocation, monkeypatch
):
    """``benchmarks/bench_ppi_racing.py`` reports races replayed on a full scan's values: the
    replay must score the same cells and end with the same decisions as the race itself."""
    from tests.test_docs_results import _benchmark

    config = ScanConfig(method="ppi-racing", k=3, race_allocation=allocation, batch_size=32)
    raced = score_heads(planted, discovery, config, progress=False)
    assert raced.predictions is not None and raced.status is not None
    replay = _benchmark("bench_ppi_racing").replay
    # the replay drives racing with a stand-in scan state (no model), as the benchmark runs it:
    # without the run-time annotation checks that the test session adds
    monkeypatch.setattr(jaxtyping.config, "jaxtyping_disable", True)
    trace = replay(full.per_example, raced.predictions, config)
    cells, status = trace[-1]
    assert cells == int((~torch.isnan(raced.per_example)).sum())
    assert status == {(l, h): int(raced.status[l, h]) for l, h in status}
    assert len(status) == raced.status.numel()
