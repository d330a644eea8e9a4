"""``attention_emphasis``: PASTA (Zhang et al., ICLR 2024): at the chosen heads, the attention on
prompt tokens outside the profile is scaled by ``α`` and every row renormalised, so those heads
read the profile more (``dps_lens.interventions.emphasis``). One forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    Steering,
    SteeringContext,
    register_method,
)
from dps_lens.steering.methods.edit import StrengthEditConfig

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class AttentionEmphasisConfig(StrengthEditConfig):
    name = "attention_emphasis"
    description = "the heads' attention off the profile scaled by alpha (PASTA)"
    ablation = "emphasis"
    alphas = (0.5, 0.1, 0.01)  # α = 1 is plain: 0.5 is the weakest

    alpha: float = 0.01  # attention kept on prompt tokens outside the profile, in (0, 1]


def attention_emphasis(
    model: TransformerBridge, heads: HeadsOrWeights, alpha: float = 0.01
) -> Steering:
    """PASTA's attention emphasis on the profile at ``heads``."""
    return AttentionEmphasisConfig(alpha).build(SteeringContext(model, heads=heads))
