"""Scores per user or per cluster, from one scan: every example's PCS is kept, so a group's
score is the mean over its own examples (no re-scan)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from dps_lens.data.example import ExampleRef
from dps_lens.errors import DpsLensError
from dps_lens.scoring.head_scores import HeadScores


def subset(scores: HeadScores, rows: list[int]) -> HeadScores:
    """The scores of the examples at ``rows`` (statistics recomputed on them)."""
    index = torch.tensor(rows, dtype=torch.long)
    return HeadScores(
        per_example=scores.per_example[index],
        clean_loss=scores.clean_loss[index],
        model_id=scores.model_id,
        data_hash=scores.data_hash,
        example_ids=[scores.example_ids[i] for i in rows],
        config={
            **scores.config,
            "n_bootstrap": min(int(scores.config.get("n_bootstrap", 1000)), 200),
        },
    )


def group_scores(
    scores: HeadScores,
    group_of: Callable[[ExampleRef], str] | Mapping[str, str] | None = None,
    min_examples: int = 1,
) -> dict[str, HeadScores]:
    """``{group: scores of its examples}`` for groups with at least ``min_examples`` examples.

    ``group_of`` maps an example to its group: by default its user; pass a mapping from user
    id to cluster for cluster scores. Groups come in first-seen order.
    """
    rows: dict[str, list[int]] = {}
    for row, example_id in enumerate(scores.example_ids):
        if group_of is None:
            group = example_id.user_id
        elif isinstance(group_of, Mapping):
            if example_id.user_id not in group_of:
                raise DpsLensError(
                    f"user {example_id.user_id!r} of example {example_id} has no group"
                )
            group = group_of[example_id.user_id]
        else:
            group = group_of(example_id)
        rows.setdefault(str(group), []).append(row)
    kept = {group: r for group, r in rows.items() if len(r) >= min_examples}
    if not kept:
        sizes = sorted((len(r) for r in rows.values()), reverse=True)[:5]
        raise DpsLensError(
            f"no group has at least {min_examples} scored examples (largest: {sizes}); "
            "lower the minimum or score more examples per user"
        )
    return {group: subset(scores, r) for group, r in kept.items()}
