"""Coherence: how likely the unsteered model finds a (steered) output, as per-token NLL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dps_lens.data.encoding import EncodedExample, collate, pad_id_of
from dps_lens.scoring.loss import forward_nll

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def output_nll(
    model: TransformerBridge,
    prompt_ids: Sequence[Sequence[int]],
    output_ids: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> list[float]:
    """Mean NLL (nats/token) of every output given its prompt under ``model`` as it is (no
    hooks from steering); ``nan`` for an empty output. ``exp`` of it is the perplexity."""
    values = [math.nan] * len(prompt_ids)
    scored = [i for i, out in enumerate(output_ids) if out]
    pad_id = pad_id_of(model.tokenizer)
    for start in range(0, len(scored), batch_size):
        rows = scored[start : start + batch_size]
        batch = collate(
            [EncodedExample([*prompt_ids[i], *output_ids[i]], len(prompt_ids[i]), 0) for i in rows],
            pad_id,
        )
        for i, nll in zip(rows, forward_nll(model, batch).tolist(), strict=True):
            values[i] = nll
    return values
