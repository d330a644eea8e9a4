"""Route users to clusters and turn cluster head sets into per-user head weight maps.

Hard routing puts all weight on the nearest centroid; soft routing weights cluster c by
``softmax(-‖e − μ_c‖ / τ)``. A user's weight map is ``Σ_c w_c · M_c`` with ``M_c`` the 0/1 map of
cluster c's top-K heads, so weighted DPS scales each head by ``1 − w`` in the masked run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.clusters.embeddings import ProfileEncoder, embed_users
from dps_lens.clusters.kmeans import UserClusters
from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.headsets import ranking
from dps_lens.interventions import HeadMask
from dps_lens.scoring.head_scores import HeadScores

ROUTINGS = ("hard", "soft")


def route(
    embeddings: Float[np.ndarray, "n d"],
    centroids: Float[np.ndarray, "k d"],
    mode: str = "hard",
    tau: float = 1.0,
) -> Float[np.ndarray, "n k"]:
    """Cluster weights of each embedding (rows sum to 1)."""
    if mode not in ROUTINGS:
        raise DpsLensError(f"unknown routing {mode!r}; use hard or soft")
    if not tau > 0:
        raise DpsLensError(f"the routing temperature tau must be > 0, got {tau}")
    distances = np.linalg.norm(embeddings[:, None, :] - centroids[None, :, :], axis=-1)
    if mode == "hard":
        return np.eye(centroids.shape[0], dtype=np.float32)[distances.argmin(1)]
    logits = -distances / tau
    weights = np.exp(logits - logits.max(1, keepdims=True))
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def cluster_head_maps(
    cluster_scores: Mapping[str, HeadScores], clusters: UserClusters, k_heads: int
) -> Float[Tensor, "k n_layers n_heads"]:
    """0/1 map of each cluster's top-``k_heads`` heads, in centroid order (``c0``, ``c1``, ...)."""
    maps = []
    for index in range(clusters.k):
        name = f"c{index}"
        if name not in cluster_scores:
            raise DpsLensError(f"no head scores for cluster {name}; rerun discover --by cluster")
        scores = cluster_scores[name]
        maps.append(
            HeadMask.from_heads(ranking(scores)[:k_heads], scores.n_layers, scores.n_heads).weights
        )
    return torch.stack(maps)


def routed_weights(
    examples: Sequence[PreferenceExample],
    encoder: ProfileEncoder,
    clusters: UserClusters,
    maps: Float[Tensor, "k n_layers n_heads"],
    mode: str = "hard",
    tau: float = 1.0,
) -> Float[Tensor, "n_examples n_layers n_heads"]:
    """One head weight map per example, from its user's profile routed to the clusters."""
    users, vectors = embed_users(examples, encoder)
    if vectors.shape[1] != clusters.centroids.shape[1]:
        raise DpsLensError(
            f"embeddings have {vectors.shape[1]} dimensions but the centroids {clusters.centroids.shape[1]}: "
            f"use the encoder the clusters were fit with ({clusters.encoder})"
        )
    weights = torch.from_numpy(route(vectors, clusters.centroids, mode, tau))
    per_user = torch.einsum("uk,klh->ulh", weights, maps.float()).clamp(0.0, 1.0)  # float rounding
    row = {user: i for i, user in enumerate(users)}
    return torch.stack([per_user[row[e.user_id]] for e in examples])
