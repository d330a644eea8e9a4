"""Split examples by user, so discovery and evaluation never share a user."""

from __future__ import annotations

import random
from collections.abc import Sequence

from dps_lens.data.example import ExampleRef, PreferenceExample, data_hash, user_ids
from dps_lens.errors import DpsLensError


def split_by_user(
    examples: Sequence[PreferenceExample], discovery_fraction: float = 0.5, seed: int = 0
) -> tuple[list[PreferenceExample], list[PreferenceExample]]:
    """(discovery, evaluation): a seeded shuffle of the users, cut at ``discovery_fraction``."""
    if not 0.0 < discovery_fraction < 1.0:
        raise DpsLensError(f"discovery_fraction must be in (0, 1), got {discovery_fraction}")
    users = user_ids(examples)
    if len(users) < 2:
        raise DpsLensError("a user-disjoint split needs at least two users")
    random.Random(seed).shuffle(users)
    n_discovery = min(max(1, round(discovery_fraction * len(users))), len(users) - 1)
    chosen = set(users[:n_discovery])
    discovery = [e for e in examples if e.user_id in chosen]
    evaluation = [e for e in examples if e.user_id not in chosen]
    return discovery, evaluation


def sample_examples(
    examples: Sequence[PreferenceExample], n: int | None, seed: int = 0
) -> list[PreferenceExample]:
    """``n`` examples drawn without replacement (seeded), in their original order; all if ``n`` is None."""
    if n is None:
        return list(examples)
    if n <= 0:
        raise DpsLensError(f"--n-examples must be positive, got {n}")
    if n > len(examples):
        raise DpsLensError(
            f"--n-examples {n} is larger than the {len(examples)} examples in the data; "
            f"use --n-examples {len(examples)} or less"
        )
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def discovery_examples(
    examples: Sequence[PreferenceExample], refs: Sequence[ExampleRef], digest: str
) -> list[PreferenceExample]:
    """The examples a saved scan scored, found again in ``examples`` by their users (each user's
    examples in file order), checked against the scan's data hash ``digest``."""
    by_user: dict[str, list[PreferenceExample]] = {}
    for example in examples:
        by_user.setdefault(example.user_id, []).append(example)
    found = []
    for ref in refs:
        pending = by_user.get(ref.user_id)
        if not pending:
            raise DpsLensError(
                f"the data holds no (further) example of user {ref.user_id!r} that the head set "
                "was scored on: pass the data file discovery read, or --examples-from data"
            )
        found.append(pending.pop(0))
    if data_hash(found) != digest:
        raise DpsLensError(
            "the examples found by user differ from those the head set was scored on (data "
            "hash mismatch): pass the data file discovery read, or --examples-from data"
        )
    return found
