"""Head sets for steering, read from what ``dps-lens discover`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from dps_lens.errors import DpsLensError
from dps_lens.heads import Head
from dps_lens.scoring.head_scores import META_FILE, HeadScores

TOP_K_FILE = "top_k.json"


def _saved_head_set(path: Path) -> list[Head]:
    try:
        return [(int(l), int(h)) for l, h in json.loads(path.read_text(encoding="utf-8"))["heads"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise DpsLensError(
            f'{path} is not a head list: expected JSON {{"heads": [[layer, head], ...]}} ({exc})'
        ) from None


def read_heads(path: str | Path, k: int | None = None) -> list[Head]:
    """The head set saved by ``discover`` (its ``top_k.json``), as saved; with ``k``, the top
    ``k`` heads of the saved scores (or the first ``k`` of a head list without scores)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if k is not None and path.is_dir() and (path / META_FILE).exists():
        return HeadScores.load(path).top_k(k)
    listing = path / TOP_K_FILE if path.is_dir() else path
    if not listing.is_file():
        raise DpsLensError(
            f"no head set at {path}: pass a dps-lens discover output directory or its {TOP_K_FILE}"
        )
    heads = _saved_head_set(listing)
    if k is None:
        return heads
    if k > len(heads):
        raise DpsLensError(
            f"asked for {k} heads but {listing} lists only {len(heads)} and {directory} holds no "
            "scores to rank more; rerun discover with a larger --k"
        )
    return heads[:k]
