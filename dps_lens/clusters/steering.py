"""Cluster-routed DPS as registered methods ``cluster_dps_hard`` and ``cluster_dps_soft``.

Each input's user is routed to the profile clusters of a ``discover --by cluster`` output, and the
masked run scales each head by ``1 − w`` with ``w`` that user's routed head weights. This module is
a ``dps_lens.plugins`` entry point, so the methods are listed once the registry is consulted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from jaxtyping import Float
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.clusters.embeddings import ProfileEncoder, SentenceEncoder
from dps_lens.clusters.groups_io import load_groups
from dps_lens.clusters.kmeans import UserClusters
from dps_lens.clusters.routing import cluster_head_maps, routed_weights
from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.steering.methods import DPSConfig, Steering, SteeringContext, register_method

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class ClusterRouting:
    """The clusters, each cluster's 0/1 map of its top-K heads (centroid order) and the profile
    encoder that routes users to them."""

    clusters: UserClusters
    maps: Float[Tensor, "k n_layers n_heads"]
    encoder: ProfileEncoder


def load_cluster_routing(source: Path, k: int | None, encoder: str | None) -> ClusterRouting:
    """The routing of a ``discover --by cluster`` output (its directory or its ``top_k.json``):
    each cluster's top-``k`` heads (default: the K saved by discover) and the ``encoder`` (a
    sentence-transformers name or path; default: the one the clusters were fit with)."""
    directory = source if source.is_dir() else source.parent
    clusters = UserClusters.load(directory)
    if k is None:
        k = _saved_k(directory / "top_k.json")
    maps = cluster_head_maps(load_groups(directory / "clusters"), clusters, k)
    return ClusterRouting(clusters, maps, SentenceEncoder(encoder or clusters.encoder))


def _saved_k(path: Path) -> int:
    if not path.exists():
        raise DpsLensError(
            f"{path} not found: pass --k, or --heads DIR from `discover --by cluster`"
        )
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["k"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a top_k.json ({exc}); pass --k") from None


@dataclass(frozen=True)
class ClusterDPSConfig(DPSConfig):
    """DPS whose masked run uses each input's head weights routed by ``routing`` (hard: the
    nearest centroid; soft: ``softmax(−‖e − μ_c‖ / τ)`` over the clusters)."""

    routing: ClassVar[str]

    tau: float = 1.0  # soft routing temperature τ > 0
    encoder: str | None = None  # profile encoder (default: the one the clusters were fit with)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("tau", self.tau, low=0, low_open=True)

    def routed(self, context: SteeringContext, routing: ClusterRouting) -> Steering:
        """The ``Steering`` with ``routing``'s weights for ``context.examples`` (decode those
        examples, in that order, with it)."""
        if not context.examples:
            raise DpsLensError(f"{self.name} routes each input by its user's profile: pass --data")
        weights = routed_weights(
            context.examples,
            routing.encoder,
            routing.clusters,
            routing.maps,
            self.routing,
            self.tau,
        )
        return self.with_heads(context, weights)

    def build(self, context: SteeringContext) -> Steering:
        if context.source is None or not context.examples:
            raise DpsLensError(
                f"{self.name} needs --heads DIR from `discover --by cluster` and --data"
            )
        return self.routed(context, load_cluster_routing(context.source, context.k, self.encoder))


@register_method
@dataclass(frozen=True)
class ClusterDPSHardConfig(ClusterDPSConfig):
    name = "cluster_dps_hard"
    description = "DPS with the heads of each user's nearest profile cluster"
    routing = "hard"


@register_method
@dataclass(frozen=True)
class ClusterDPSSoftConfig(ClusterDPSConfig):
    name = "cluster_dps_soft"
    description = "DPS with each user's heads weighted over the profile clusters by distance"
    routing = "soft"


ROUTED_METHODS: dict[str, type[ClusterDPSConfig]] = {
    "hard": ClusterDPSHardConfig,
    "soft": ClusterDPSSoftConfig,
}


def cluster_dps(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    encoder: ProfileEncoder,
    clusters: UserClusters,
    maps: Float[Tensor, "k n_layers n_heads"],
    routing: str = "hard",
    tau: float = 1.0,
    means: Tensor | None = None,
    **dps_params: Any,
) -> Steering:
    """Cluster-routed DPS from clusters, head maps and an encoder in memory (generate these
    examples, in this order, with it); ``dps_params`` are ``DPSConfig``'s."""
    if routing not in ROUTED_METHODS:
        raise DpsLensError(f"unknown routing {routing!r}; use hard or soft")
    config = ROUTED_METHODS[routing](tau=tau, **dps_params)
    context = SteeringContext(model, means=means, examples=examples)
    return config.routed(context, ClusterRouting(clusters, maps, encoder))
