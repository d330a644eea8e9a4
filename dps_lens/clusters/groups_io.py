"""Per-user or per-cluster scores on disk: ``<dir>/groups.json`` indexes one folder per group.

Folder names are ``g000``, ``g001``, ... (user ids may hold ``/`` or other characters a path
cannot); ``groups.json`` maps each group name to its folder, size and top-K heads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from dps_lens._io import atomic_write_json
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.headsets import ranking
from dps_lens.scoring.head_scores import HeadScores

INDEX_FILE = "groups.json"


def save_groups(groups: Mapping[str, HeadScores], directory: str | Path, k: int) -> Path:
    """Save each group's scores and an index with its top-``k`` heads."""
    directory = Path(directory)
    index = {}
    for i, (name, scores) in enumerate(groups.items()):
        folder = f"g{i:03d}"
        scores.save(directory / folder)
        index[name] = {
            "folder": folder,
            "n_examples": scores.n_examples,
            "top_k": [list(h) for h in ranking(scores)[:k]],
        }
    return atomic_write_json(directory / INDEX_FILE, {"k": k, "groups": index})


def load_groups(directory: str | Path) -> dict[str, HeadScores]:
    """``{group name: scores}`` as ``save_groups`` wrote them."""
    path = Path(directory) / INDEX_FILE
    if not path.exists():
        raise DpsLensError(
            f"{path} not found: point to the --out of `dps-lens discover --by user|cluster`"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))["groups"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: not a groups index ({exc})") from None
    return {
        name: HeadScores.load(Path(directory) / entry["folder"]) for name, entry in index.items()
    }
