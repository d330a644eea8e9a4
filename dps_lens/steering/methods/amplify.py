"""``amplify``: the chosen heads' outputs scaled by ``1 + α`` (``dps_lens.interventions.amplify``),
the opposite of the masking DPS contrasts with. One forward pass per step."""

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
class AmplifyConfig(StrengthEditConfig):
    name = "amplify"
    description = "the heads' outputs scaled by 1 + alpha"
    ablation = "amplify"
    alphas = (0.25, 0.5, 1.0)

    alpha: float = 1.0  # amplification α >= 0: the heads' outputs times 1 + α


def amplify(model: TransformerBridge, heads: HeadsOrWeights, alpha: float = 1.0) -> Steering:
    """The outputs of ``heads`` scaled by ``1 + alpha``."""
    return AmplifyConfig(alpha).build(SteeringContext(model, heads=heads))
