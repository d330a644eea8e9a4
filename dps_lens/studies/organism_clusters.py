"""Cluster-aware steering on the grouped organism, where the truth is known.

``organism-groups`` has two user groups (formal and casual voices) whose profiles are readable
only by different planted heads. One exact scan on discovery users gives global and per-cluster
scores; users are clustered by their MiniLM profile embeddings; every method then decodes the
same evaluation users' queries with K heads per user.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dps_lens import distributed
from dps_lens._io import atomic_write_report
from dps_lens.clusters import (
    ClusterDPSHardConfig,
    ClusterDPSSoftConfig,
    SentenceEncoder,
    embed_users,
    fit_clusters,
)
from dps_lens.clusters.groups_io import save_groups
from dps_lens.evaluation import EvalConfig, table_rows
from dps_lens.heads import format_heads
from dps_lens.headsets import jaccard, ranking
from dps_lens.models import load_model
from dps_lens.organism.planted import group_designated_heads
from dps_lens.organism.world import World, WorldConfig
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.groups import group_scores
from dps_lens.steering import SteeringContext
from dps_lens.steering.methods import CADConfig, DPSConfig, PlainConfig, RandomHeadsConfig
from dps_lens.studies.sweep import SweepPoint, evaluate_points


def _purity(labels: Sequence[int], truth: Sequence[int]) -> float:
    """Share of users whose cluster's majority group is their own group."""
    majority = {}
    for label in set(labels):
        members = [t for l, t in zip(labels, truth, strict=True) if l == label]
        majority[label] = max(set(members), key=members.count)
    return sum(majority[l] == t for l, t in zip(labels, truth, strict=True)) / len(labels)


def method_points(ks: Sequence[int], gamma: float, taus: Sequence[float]) -> list[SweepPoint]:
    """plain and CAD, then at each K (heads per user): global DPS, random heads, and DPS routed
    to the clusters, hard and soft at each τ (the soft rows named by their τ)."""
    points = [SweepPoint("plain", PlainConfig()), SweepPoint("cad", CADConfig(alpha=gamma))]
    for k in ks:
        soft = [
            SweepPoint(
                f"cluster_dps_soft_tau{tau:g}@k{k}",
                ClusterDPSSoftConfig(gamma=gamma, tau=tau),
                k=k,
                variant=f"_tau{tau:g}",
            )
            for tau in taus
        ]
        points += [
            SweepPoint(f"dps_global@k{k}", DPSConfig(gamma=gamma), k=k, variant="_global"),
            SweepPoint(f"random_heads@k{k}", RandomHeadsConfig(gamma=gamma, seed=0), k=k),
            SweepPoint(f"cluster_dps_hard@k{k}", ClusterDPSHardConfig(gamma=gamma), k=k),
            *soft,
        ]
    return points


def run_cluster_study(
    model_name: str = "organism-groups",
    out: str | Path = "runs/study-organism-groups",
    n_discovery_users: int = 60,
    n_evaluation_users: int = 300,
    ks: Sequence[int] = (1, 2, 3),
    n_clusters: int = 2,
    gamma: float = 1.0,
    taus: Sequence[float] = (1.0, 0.05),
    encoder: str = "minilm",
    progress: bool = True,
) -> dict[str, Any]:
    """Discover globally and per cluster, then compare global DPS with cluster-routed DPS at
    every K in ``ks`` (heads per user); write ``report.json`` and ``report.md`` into ``out``."""
    started = time.perf_counter()
    out = Path(out)
    model = load_model(model_name, device="cpu")
    world = World(WorldConfig(grouped=True))
    discovery = world.split_examples("discovery", n_discovery_users, queries_per_user=2)
    evaluation = world.split_examples("evaluation", n_evaluation_users, queries_per_user=1)
    scores = score_heads(
        model,
        discovery,
        ScanConfig(),
        checkpoint_dir=out / "discover" / "checkpoint",
        progress=progress,
    )
    ranks = distributed.current()  # under torchrun, rank 0 writes
    if ranks.is_main:
        scores.save(out / "discover")
    profile_encoder = SentenceEncoder(encoder)
    user_ids, vectors = embed_users(discovery, profile_encoder)
    clusters = fit_clusters(user_ids, vectors, n_clusters, encoder=encoder)
    assignment = clusters.assignment()
    per_cluster = group_scores(scores, assignment)
    if ranks.is_main:
        clusters.save(out / "discover")
        save_groups(per_cluster, out / "discover" / "clusters", max(ks))
    ranks.barrier()  # the cluster-routed methods read these files
    truth = {e.user_id: e.meta["group"] for e in discovery}
    planted = group_designated_heads(model)
    cluster_report = {}
    for name, cluster in per_cluster.items():
        members = [u for u, c in assignment.items() if c == name]
        group = max((0, 1), key=lambda g: sum(truth[u] == g for u in members))
        top = ranking(cluster)[: len(planted[group])]
        cluster_report[name] = {
            "users": len(members),
            "majority_group": group,
            "top_heads": [list(h) for h in top],
            "planted_heads": [list(h) for h in planted[group]],
            "jaccard_with_planted": jaccard(top, planted[group]),
        }
    global_ranking = ranking(scores)
    stop = tuple(model.tokenizer.convert_tokens_to_ids([".", "!"]))

    def context(point: SweepPoint) -> SteeringContext:
        heads = global_ranking[: point.k] if point.k else None
        source = out / "discover"
        return SteeringContext(model, heads=heads, examples=evaluation, source=source, k=point.k)

    points = method_points(ks, gamma, taus)
    config = EvalConfig(max_new_tokens=8, batch_size=64, extra_stop_ids=stop)
    results = evaluate_points(model, evaluation, points, context, config, out / "methods", progress)
    groups = [e.meta["group"] for e in evaluation]
    rows = []
    for row, point, result in zip(table_rows(results), points, results, strict=True):
        by_group = {
            str(g): float(
                np.mean(
                    [r["personalized"] for r, e in zip(result.rows, groups, strict=True) if e == g]
                )
            )
            for g in (0, 1)
        }
        rows.append(
            {
                **row,
                "method": point.method,
                "k": point.k,
                "personalization_by_group": by_group,
            }
        )
    report = {
        "model": model_name,
        "n_discovery_examples": len(discovery),
        "n_evaluation_examples": len(evaluation),
        "gamma": gamma,
        "global_top_heads": [list(h) for h in global_ranking[:6]],
        "planted": {str(g): [list(h) for h in heads] for g, heads in planted.items()},
        "cluster_purity": _purity(clusters.labels, [truth[u] for u in clusters.user_ids]),
        "clusters": cluster_report,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = report_markdown(report)
    if ranks.is_main:
        atomic_write_report(out, "report", report, text)
    report["markdown"] = text
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md`` from the report of ``run_cluster_study`` (or its ``report.json``)."""
    lines = [
        f"## {report['model']}: global vs cluster-routed DPS (γ = {report['gamma']:g})",
        "",
        f"Planted heads: group 0 (formal) {format_heads(report['planted']['0'])}; group 1 (casual) "
        f"{format_heads(report['planted'].get('1', []))}. "
        f"Global top heads: {format_heads(report['global_top_heads'])}.",
        f"Cluster purity (share of users in a cluster of their own group): {report['cluster_purity']:.3f}.",
        "",
        "| cluster | users | majority group | top heads | planted | Jaccard |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in sorted(report["clusters"].items()):  # key order is lost in report.json
        lines.append(
            f"| {name} | {c['users']} | {c['majority_group']} | {format_heads(c['top_heads'])} | "
            f"{format_heads(c['planted_heads'])} | {c['jaccard_with_planted']:.2f} |"
        )
    lines += [
        "",
        "Personalization [95% CI] with K heads per user, overall and by group:",
        "",
        "| method | K | personalization | group 0 | group 1 | coherence ppl |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(report["rows"], key=lambda r: r["k"] or 0):
        g = r["personalization_by_group"]
        lines.append(
            f"| {r['method']} | {r['k'] or '–'} | {r['personalization']:.3f} "
            f"[{r['personalization_low']:.3f}, {r['personalization_high']:.3f}] | {g['0']:.3f} | "
            f"{g['1']:.3f} | {r['coherence_ppl']:.2f} |"
        )
    return "\n".join(lines) + "\n"
