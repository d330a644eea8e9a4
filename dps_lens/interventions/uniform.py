"""``uniform``: ``A ← (1 − w)·A + w·U`` at ``hook_pattern``, ``U`` uniform over the visible keys.

This is the authors' decode-time masking (zeroing a head's query makes its attention uniform).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.interventions.ablation import AblationInputs, PatternAblation, register_ablation


def uniform_pattern(
    n_queries: int, n_keys: int, key_mask: Bool[Tensor, "batch key"] | None, device: torch.device
) -> Float[Tensor, "batch 1 query key"]:
    """Uniform attention over visible keys; queries are the last ``n_queries`` of ``n_keys``."""
    query_pos = torch.arange(n_keys - n_queries, n_keys, device=device)[:, None]
    visible = (torch.arange(n_keys, device=device)[None, :] <= query_pos)[None, None]
    if key_mask is not None:
        visible = visible & key_mask[:, None, None, :].to(device)
    visible = visible.float()
    return visible / visible.sum(-1, keepdim=True).clamp_min(1.0)


@register_ablation
class UniformAttention(PatternAblation):
    name = "uniform"
    description = "the head attends uniformly to every visible key"

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        key_mask, n_keys = inputs.key_mask, value.shape[-1]
        # the keys are the sequence's last n_keys positions (a sliding-window cache keeps fewer)
        rows = (
            key_mask[:, -n_keys:] if key_mask is not None and key_mask.shape[-1] >= n_keys else None
        )
        return uniform_pattern(value.shape[-2], n_keys, rows, value.device)
