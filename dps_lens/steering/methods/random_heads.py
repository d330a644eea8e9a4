"""``random_heads``: DPS with as many heads drawn (seeded) from outside the preference heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dps_lens.heads import Head, draw_random_heads
from dps_lens.interventions import as_mask, model_shape
from dps_lens.steering.methods.base import Steering, SteeringContext, register_method
from dps_lens.steering.methods.dps import DPSConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class RandomHeadsConfig(DPSConfig):
    name = "random_heads"
    description = "DPS with as many random heads from outside the set (control)"

    seed: int = 0  # seed of the draw

    def build(self, context: SteeringContext) -> Steering:
        heads = as_mask(context.model, context.require_heads(self.name)).heads
        drawn = draw_random_heads(heads, *model_shape(context.model), seed=self.seed)
        return self.with_heads(context, drawn)


def random_heads(
    model: TransformerBridge, heads: Sequence[Head], seed: int = 0, **dps_params: Any
) -> Steering:
    """DPS with ``len(heads)`` heads drawn (seeded) from the heads not in ``heads``."""
    return RandomHeadsConfig(seed=seed, **dps_params).build(SteeringContext(model, heads=heads))
