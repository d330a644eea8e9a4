"""``uniform``: ``A ← (1 − w)·A + w·U`` at ``hook_pattern``, ``U`` uniform over the visible keys.

This is the authors' decode-time masking (zeroing a head's query makes its attention uniform).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.interventions.ablation import Ablation, AblationInputs, register_ablation


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
class UniformAttention(Ablation):
    name = "uniform"
    hook = "hook_pattern"
    description = "the head attends uniformly to every visible key"

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        key_mask = inputs.key_mask
        rows = key_mask if key_mask is None or key_mask.shape[-1] == value.shape[-1] else None
        return uniform_pattern(value.shape[-2], value.shape[-1], rows, value.device)

    def weights_like(self, weights: Tensor, value: Tensor) -> Tensor:
        return weights[:, :, None, None]
