"""Heterogeneous users: profile embeddings, k-means clusters, routing and cluster-routed DPS."""

from dps_lens.clusters.embeddings import (
    SentenceEncoder,
    embed_users,
    user_profiles,
)
from dps_lens.clusters.kmeans import UserClusters, default_k, fit_clusters
from dps_lens.clusters.routing import cluster_head_maps, route, routed_weights
from dps_lens.clusters.steering import (
    ClusterDPSHardConfig,
    ClusterDPSSoftConfig,
    ClusterRouting,
    cluster_dps,
    load_cluster_routing,
)

__all__ = [
    "ClusterDPSHardConfig",
    "ClusterDPSSoftConfig",
    "ClusterRouting",
    "SentenceEncoder",
    "UserClusters",
    "cluster_dps",
    "cluster_head_maps",
    "default_k",
    "embed_users",
    "fit_clusters",
    "load_cluster_routing",
    "route",
    "routed_weights",
    "user_profiles",
]
