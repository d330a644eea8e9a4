"""Head sets and their overlap: top-K sets per group, Jaccard indices, split-half stability."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from dps_lens.errors import DpsLensError
from dps_lens.heads import Head
from dps_lens.scoring.head_scores import HeadScores, Select, rank_heads


def jaccard(a: Iterable[Sequence[int]], b: Iterable[Sequence[int]]) -> float:
    """|A ∩ B| / |A ∪ B| of two head sets, pairs as tuples or lists (1.0 for two empty sets)."""
    first, second = set(map(tuple, a)), set(map(tuple, b))
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def pairwise_jaccard(sets: Mapping[str, Sequence[Head]]) -> np.ndarray:
    """``[n, n]`` matrix of Jaccard indices between every pair of named head sets."""
    values = list(sets.values())
    return np.array([[jaccard(a, b) for b in values] for a in values])


def mean_pairwise_jaccard(sets: Sequence[Sequence[Head]]) -> float:
    """Mean Jaccard index over distinct pairs (NaN with fewer than two sets)."""
    pairs = [jaccard(a, b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
    return float(np.mean(pairs)) if pairs else float("nan")


def ranking(scores: HeadScores) -> list[Head]:
    """Every scored head, highest mean PCS first."""
    return rank_heads(scores.mean)


def split_half_rankings(
    scores: HeadScores, n_splits: int = 20, seed: int = 0, by: Select = "pcs"
) -> list[tuple[list[Head], list[Head]]]:
    """Rankings from random halves of the examples, in pairs: how stable is the top-K set?
    ``by``: rank by PCS, or by ΔPCS (``specific``, for a scan with the no-profile contrast)."""
    n = scores.n_examples
    if n < 2:
        raise DpsLensError(f"split-half stability needs at least 2 scored examples, got {n}")
    values = scores.per_example
    if by == "specific":
        if scores.no_profile is None:
            raise DpsLensError(
                "ΔPCS needs a scan with the no-profile contrast (--contrast no-profile)"
            )
        values = values - scores.no_profile
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n_splits):
        order = torch.randperm(n, generator=generator)
        halves = order[: n // 2], order[n // 2 :]
        pairs.append(tuple(rank_heads(values[half].nanmean(0)) for half in halves))
    return pairs
