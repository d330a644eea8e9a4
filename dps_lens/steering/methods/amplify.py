"""``amplify``: the chosen heads' outputs scaled by ``1 + α`` (``dps_lens.interventions.amplify``),
the opposite of the masking DPS contrasts with. One forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dps_lens.interventions import Ablation, get_ablation
from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    Steering,
    SteeringContext,
    register_method,
)
from dps_lens.steering.methods.edit import HeadEditConfig

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class AmplifyConfig(HeadEditConfig):
    name = "amplify"
    description = "the heads' outputs scaled by 1 + alpha"

    alpha: float = 1.0  # amplification α >= 0: the heads' outputs times 1 + α

    def __post_init__(self) -> None:
        get_ablation("amplify", alpha=self.alpha)  # checks alpha

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"alpha": alpha} for alpha in (0.25, 0.5, 1.0)]

    def intervention(self, context: SteeringContext) -> Ablation:
        return get_ablation("amplify", alpha=self.alpha)


def amplify(model: TransformerBridge, heads: HeadsOrWeights, alpha: float = 1.0) -> Steering:
    """The outputs of ``heads`` scaled by ``1 + alpha``."""
    return AmplifyConfig(alpha).build(SteeringContext(model, heads=heads))
