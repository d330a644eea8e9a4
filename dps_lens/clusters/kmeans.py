"""Users grouped by profile embedding with k-means; saved as JSON next to their scores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from dps_lens._io import atomic_write_json
from dps_lens.errors import DataFormatError, DpsLensError

CLUSTERS_FILE = "clusters.json"


def default_k(n_users: int) -> int:
    """The paper's rule: ``round(N / 100)`` clusters for N users, at least 1."""
    return max(1, round(n_users / 100))


@dataclass(frozen=True)
class UserClusters:
    """k-means of users' profile embeddings: ``labels[i]`` is ``user_ids[i]``'s cluster."""

    centroids: Float[np.ndarray, "k d"]
    user_ids: list[str]
    labels: list[int]
    encoder: str
    seed: int = 0

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assignment(self) -> dict[str, str]:
        """``{user_id: cluster name}`` (names ``c0``, ``c1``, ...)."""
        return {user: f"c{label}" for user, label in zip(self.user_ids, self.labels, strict=True)}

    def sizes(self) -> list[int]:
        return np.bincount(np.asarray(self.labels), minlength=self.k).tolist()

    def save(self, directory: str | Path) -> Path:
        return atomic_write_json(
            Path(directory) / CLUSTERS_FILE,
            {
                "k": self.k,
                "encoder": self.encoder,
                "seed": self.seed,
                "sizes": self.sizes(),
                "centroids": self.centroids.tolist(),
                "users": dict(zip(self.user_ids, self.labels, strict=True)),
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> UserClusters:
        path = Path(directory) / CLUSTERS_FILE
        if not path.exists():
            raise DpsLensError(
                f"{path} not found: cluster routing needs the --out of `dps-lens discover --by cluster`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                centroids=np.asarray(data["centroids"], dtype=np.float32),
                user_ids=list(data["users"]),
                labels=[int(v) for v in data["users"].values()],
                encoder=str(data["encoder"]),
                seed=int(data.get("seed", 0)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}: not a clusters file ({exc})") from None


def fit_clusters(
    user_ids: Sequence[str],
    embeddings: Float[np.ndarray, "n d"],
    k: int | None = None,
    seed: int = 0,
    encoder: str = "custom",
) -> UserClusters:
    """k-means (scikit-learn, 10 seeded restarts) with ``k`` clusters (default ``default_k``)."""
    from sklearn.cluster import KMeans

    n = len(user_ids)
    k = default_k(n) if k is None else k
    if not 1 <= k <= n:
        raise DpsLensError(f"cannot make {k} clusters of {n} users; use 1 <= k <= {n}")
    # n_init: scikit-learn infers its type from the default "auto"; it takes an int too
    model = KMeans(n_clusters=k, n_init=10, random_state=seed)  # pyright: ignore[reportArgumentType]
    labels = model.fit_predict(np.asarray(embeddings, dtype=np.float64))
    return UserClusters(
        centroids=model.cluster_centers_.astype(np.float32),
        user_ids=list(user_ids),
        labels=labels.astype(int).tolist(),
        encoder=encoder,
        seed=seed,
    )
