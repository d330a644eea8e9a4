"""``reference``: the authors' decoding choices, to compare side by side with ``dps``: uniform
attention (their query zeroing) at decode time, shared prefill, entropy-adaptive γ, the
``history`` prompt. Pair it with ``dps-lens discover --mode oproj_slice`` for their PCS."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dps_lens.checks import check_float
from dps_lens.data.prompts import get_template
from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    MethodConfig,
    Steering,
    SteeringContext,
    register_method,
)
from dps_lens.steering.methods.dps import DPSConfig

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class ReferenceConfig(MethodConfig):
    name = "reference"
    needs_heads = True
    description = "the authors' decoding (uniform attention, shared prefill, entropy γ)"

    gamma_cap: float = 2.0  # cap of the adaptive γ (nats)

    def __post_init__(self) -> None:
        check_float("gamma_cap", self.gamma_cap, low=0)

    @property
    def ablation_mode(self) -> str | None:
        return "uniform"

    def build(self, context: SteeringContext) -> Steering:
        config = DPSConfig(
            adaptive=True, gamma_cap=self.gamma_cap, mode="uniform", masked_run="shared_prefill"
        )
        steering = config.build(context)
        return replace(steering, name=self.name, template=get_template("history"))


def reference(model: TransformerBridge, heads: HeadsOrWeights, gamma_cap: float = 2.0) -> Steering:
    """The authors' decoding with ``heads``."""
    return ReferenceConfig(gamma_cap).build(SteeringContext(model, heads=heads))
