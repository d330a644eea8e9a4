"""Head sets for steering, read from what ``dps-lens discover`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from dps_lens.errors import DpsLensError
from dps_lens.heads import Head
from dps_lens.scoring.head_scores import META_FILE, HeadScores


def read_heads(path: str | Path, k: int | None = None) -> list[Head]:
    """The top-``k`` heads of a discover output directory (scores), or the heads listed in a
    ``top_k.json`` file (all of them when ``k`` is None)."""
    path = Path(path)
    if path.is_dir() and (path / META_FILE).exists():
        scores = HeadScores.load(path)
        return scores.top_k(k if k is not None else 10)
    if path.is_dir():
        path = path / "top_k.json"
    if not path.exists():
        raise DpsLensError(
            f"no head set at {path}: pass a dps-lens discover output directory or its top_k.json"
        )
    try:
        heads = [(int(l), int(h)) for l, h in json.loads(path.read_text())["heads"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DpsLensError(
            f'{path} is not a head list: expected JSON {{"heads": [[layer, head], ...]}} ({exc})'
        ) from None
    if k is not None and k > len(heads):
        raise DpsLensError(f"asked for {k} heads but {path} lists only {len(heads)}")
    return heads[:k] if k is not None else heads
