"""``decore``: DeCoRe-style contrast, heads masked by uniform attention, γ = entropy (capped)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from dps_lens.checks import check_float
from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    MaskedRun,
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
class DecoreConfig(MethodConfig):
    name = "decore"
    needs_heads = True
    description = "heads masked by uniform attention, entropy-adaptive strength"

    gamma_cap: float = 2.0  # cap of the adaptive γ (nats)
    masked_run: ClassVar[MaskedRun] = "exact"

    def __post_init__(self) -> None:
        check_float("gamma_cap", self.gamma_cap, low=0)

    @property
    def ablation_mode(self) -> str | None:
        return "uniform"

    def build(self, context: SteeringContext) -> Steering:
        config = DPSConfig(
            adaptive=True, gamma_cap=self.gamma_cap, mode="uniform", masked_run=self.masked_run
        )
        return replace(config.build(context), name=self.name)


def decore(model: TransformerBridge, heads: HeadsOrWeights, gamma_cap: float = 2.0) -> Steering:
    """DeCoRe-style contrast with ``heads``."""
    return DecoreConfig(gamma_cap).build(SteeringContext(model, heads=heads))
