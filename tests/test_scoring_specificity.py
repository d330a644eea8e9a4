"""The no-profile contrast: PCS without the profile, ΔPCS, and selection by specificity."""

from __future__ import annotations

import csv

import pytest
import torch

from dps_lens.cli import main
from dps_lens.data import get_template, write_jsonl
from dps_lens.errors import DpsLensError
from dps_lens.organism.world import World
from dps_lens.scoring import HeadScores, ScanConfig, score_heads
from tests.helpers import discover_args

PLANTED = {(1, 1), (1, 3), (2, 2)}


@pytest.fixture(scope="module")
def discovery():
    return World().split_examples("discovery", 20, queries_per_user=2)


@pytest.fixture(scope="module")
def contrast(planted, discovery):
    return score_heads(
        planted, discovery, ScanConfig(batch_size=64, contrast="no-profile"), progress=False
    )


def test_no_profile_values_are_an_exact_scan_of_the_no_profile_prompts(
    planted, discovery, contrast
):
    with_profile = score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False)
    without = score_heads(
        planted, discovery, ScanConfig(batch_size=64), get_template("no-profile"), progress=False
    )
    torch.testing.assert_close(contrast.per_example, with_profile.per_example, atol=1e-6, rtol=0)
    assert contrast.no_profile is not None and contrast.summary_delta is not None
    torch.testing.assert_close(
        contrast.no_profile, without.per_example, atol=1e-5, rtol=0
    )  # other padding
    torch.testing.assert_close(
        contrast.summary_delta.mean, (with_profile.mean - without.mean), atol=1e-5, rtol=0
    )


def test_the_planted_heads_are_the_most_specific(contrast):
    assert set(contrast.top_k(3, by="specific")) == PLANTED
    row = contrast.ranked(by="specific")[0]
    assert row["delta"] == pytest.approx(row["pcs"] - row["pcs_no_profile"], abs=1e-5)
    assert row["delta_ci_low"] > 0


def test_specific_selection_needs_the_contrast(planted, discovery):
    with pytest.raises(DpsLensError, match="needs contrast='no-profile'"):
        ScanConfig(select="specific")
    plain = score_heads(planted, discovery[:4], ScanConfig(batch_size=64), progress=False)
    with pytest.raises(DpsLensError, match="no-profile contrast"):
        plain.top_k(3, by="specific")


def test_contrast_scores_round_trip(contrast, tmp_path):
    contrast.save(tmp_path)
    loaded = HeadScores.load(tmp_path)
    assert loaded.no_profile is not None and torch.equal(loaded.no_profile, contrast.no_profile)
    assert loaded.ranked(by="specific") == contrast.ranked(by="specific")


def test_racing_on_delta_pcs_finds_the_planted_heads(planted, discovery):
    config = ScanConfig(
        method="racing",
        contrast="no-profile",
        select="specific",
        k=3,
        delta=0.5,
        round_size=8,
        batch_size=64,
    )
    race = score_heads(planted, discovery, config, progress=False)
    assert set(race.top_k(3)) == PLANTED  # the scan's own selection: by ΔPCS


def test_discover_selects_by_specificity_through_the_cli(discovery, tmp_path):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, discovery[:16])
    out = tmp_path / "run"
    extra = ("--contrast", "no-profile", "--select", "specific", "--k", "3")
    assert main(discover_args("organism-planted", data, out, *extra)) == 0
    rows = list(csv.DictReader((out / "ranked.csv").open()))
    assert {"pcs", "pcs_no_profile", "delta", "delta_ci_low"} <= set(rows[0])
    assert [float(r["delta"]) for r in rows] == sorted(
        (float(r["delta"]) for r in rows), reverse=True
    )


def test_a_specificity_race_reuses_the_cells_of_an_earlier_pcs_scan(
    planted, discovery, contrast, monkeypatch
):
    import dps_lens.scoring.planners as planners

    pcs = score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False)
    rows = []
    real = planners.forward_unit

    def counting(model, encoded, unit, *args):
        rows.extend(unit.examples)
        return real(model, encoded, unit, *args)

    monkeypatch.setattr(planners, "forward_unit", counting)
    config = ScanConfig(batch_size=64, contrast="no-profile")
    reused = score_heads(planted, discovery, config, progress=False, reuse=pcs)
    n = len(discovery)
    assert rows and min(rows) >= n  # only the no-profile rows n..2n-1 were run
    torch.testing.assert_close(reused.per_example, pcs.per_example, atol=0, rtol=0)
    assert reused.no_profile is not None and contrast.no_profile is not None
    torch.testing.assert_close(
        reused.no_profile, contrast.no_profile, atol=1e-5, rtol=0
    )  # other padding
    other = score_heads(planted, discovery[:4], ScanConfig(batch_size=64), progress=False)
    with pytest.raises(DpsLensError, match="reuses only a scan of the same model"):
        score_heads(planted, discovery, config, progress=False, reuse=other)
    zero_vs_mean = ScanConfig(batch_size=64, contrast="no-profile", mode="mean")
    with pytest.raises(DpsLensError, match="settings"):
        score_heads(planted, discovery, zero_vs_mean, progress=False, reuse=pcs)
