"""Heterogeneous users: profile embeddings, k-means clusters, routing and cluster-weighted DPS."""

from dps_lens.clusters.embeddings import (
    SentenceEncoder,
    embed_users,
    user_profiles,
)
from dps_lens.clusters.kmeans import UserClusters, default_k, fit_clusters
from dps_lens.clusters.routing import cluster_dps, cluster_head_maps, route, routed_weights

__all__ = [
    "SentenceEncoder",
    "UserClusters",
    "cluster_dps",
    "cluster_head_maps",
    "default_k",
    "embed_users",
    "fit_clusters",
    "route",
    "routed_weights",
    "user_profiles",
]
