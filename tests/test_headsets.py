"""Head-set overlaps and per-group scores computed from one scan."""

from __future__ import annotations

import math

import pytest
import torch

from dps_lens.data import ExampleRef
from dps_lens.errors import DpsLensError
from dps_lens.headsets import (
    jaccard,
    mean_pairwise_jaccard,
    pairwise_jaccard,
    ranking,
    split_half_rankings,
)
from dps_lens.scoring.groups import group_scores
from dps_lens.scoring.head_scores import HeadScores


def make_scores(per_example: torch.Tensor, users: list[str]) -> HeadScores:
    ids = [ExampleRef(i, u) for i, u in enumerate(users)]
    return HeadScores(per_example, torch.zeros(len(users)), "m", "h", ids, {"n_bootstrap": 20})


def test_jaccard() -> None:
    assert jaccard([(0, 1), (1, 1)], [(1, 1)]) == 0.5
    assert jaccard([], []) == 1.0
    assert jaccard([[0, 1]], [(0, 1)]) == 1.0  # lists from JSON compare like tuples
    matrix = pairwise_jaccard({"a": [(0, 0)], "b": [(0, 0), (0, 1)]})
    assert matrix.tolist() == [[1.0, 0.5], [0.5, 1.0]]
    assert mean_pairwise_jaccard([[(0, 0)], [(0, 0)], [(1, 1)]]) == pytest.approx(1 / 3)
    assert math.isnan(mean_pairwise_jaccard([[(0, 0)]]))


def test_group_scores_are_the_means_over_each_users_examples() -> None:
    per_example = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    scores = make_scores(per_example, ["x", "y", "x", "y", "z"])
    groups = group_scores(scores, min_examples=2)
    assert list(groups) == ["x", "y"]
    torch.testing.assert_close(groups["x"].mean, per_example[[0, 2]].mean(0))
    assert groups["y"].example_ids == [ExampleRef(1, "y"), ExampleRef(3, "y")]
    clusters = group_scores(scores, {"x": "c0", "y": "c1", "z": "c0"})
    torch.testing.assert_close(clusters["c0"].mean, per_example[[0, 2, 4]].mean(0))
    with pytest.raises(DpsLensError, match="no group"):
        group_scores(scores, min_examples=3)
    with pytest.raises(DpsLensError, match="has no group"):
        group_scores(scores, {"x": "c0"})
    assert ExampleRef.parse("12:w0-u1:odd") == ExampleRef(12, "w0-u1:odd")
    with pytest.raises(ValueError, match="is not <index>:<user_id>"):
        ExampleRef.parse("w0-u1")


def test_ranking_and_split_halves() -> None:
    per_example = torch.zeros(8, 2, 2)
    per_example[:, 1, 0] = 3.0
    per_example[:, 0, 1] = 2.0
    per_example[:, 1, 1] = float("nan")
    scores = make_scores(per_example, ["u"] * 8)
    assert ranking(scores)[:2] == [(1, 0), (0, 1)] and len(ranking(scores)) == 3
    pairs = split_half_rankings(scores, n_splits=3)
    assert len(pairs) == 3 and all(a[:2] == b[:2] == [(1, 0), (0, 1)] for a, b in pairs)
    with pytest.raises(DpsLensError, match="at least 2"):
        split_half_rankings(make_scores(per_example[:1], ["u"]))


def test_split_halves_rank_by_delta_pcs_when_asked() -> None:
    per_example = torch.zeros(8, 1, 3)
    per_example[:, 0, 0], per_example[:, 0, 1] = 3.0, 2.0  # head 0 has the larger PCS ...
    no_profile = torch.zeros(8, 1, 3)
    no_profile[:, 0, 0] = 2.9  # ... but almost all of it remains without the profile
    ids = [ExampleRef(i, "u") for i in range(8)]
    scores = HeadScores(per_example, torch.zeros(8), "m", "h", ids, {"n_bootstrap": 20}, no_profile)
    assert all(a[0] == (0, 0) for a, _ in split_half_rankings(scores, n_splits=2))
    assert all(a[0] == b[0] == (0, 1) for a, b in split_half_rankings(scores, 2, by="specific"))
    with pytest.raises(DpsLensError, match="no-profile contrast"):
        split_half_rankings(make_scores(per_example, ["u"] * 8), by="specific")
