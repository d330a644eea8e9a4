"""Per-user and per-cluster head scores from one scan, saved beside it (no further forward passes)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from dps_lens.clusters.embeddings import SentenceEncoder, embed_users
from dps_lens.clusters.groups_io import save_groups
from dps_lens.clusters.kmeans import fit_clusters
from dps_lens.data.example import PreferenceExample
from dps_lens.scoring.groups import group_scores
from dps_lens.scoring.head_scores import HeadScores


def save_group_scores(
    scores: HeadScores,
    examples: Sequence[PreferenceExample],
    out: Path,
    by: Literal["user", "cluster"],
    k: int,
    min_examples: int = 2,
    n_clusters: int | None = None,
    encoder: SentenceEncoder | None = None,
    seed: int = 0,
) -> str:
    """Write ``out/users/`` (users with ≥ ``min_examples`` examples) or ``out/clusters.json`` and
    ``out/clusters/`` (k-means of ``encoder``'s profile embeddings, default MiniLM; ``n_clusters``
    None: round(users / 100)); returns a one-line summary."""
    if by == "user":
        groups = group_scores(scores, min_examples=min_examples)
        save_groups(groups, out / "users", k)
        return f"{len(groups)} users with >= {min_examples} examples -> {out / 'users'}"
    encoder = encoder or SentenceEncoder()
    user_ids, vectors = embed_users(examples, encoder)
    clusters = fit_clusters(user_ids, vectors, n_clusters, seed=seed, encoder=encoder.name)
    if clusters.k == 1:
        print(
            f"warning: {len(user_ids)} users give k = 1 (the rule is round(users / 100)), so cluster "
            "scores equal the global ones; pass --clusters K for K > 1",
            file=sys.stderr,
        )
    clusters.save(out)
    save_groups(group_scores(scores, clusters.assignment()), out / "clusters", k)
    return f"{clusters.k} clusters of sizes {clusters.sizes()} users -> {out / 'clusters'}"
