"""``reference``: the authors' decoding choices, to compare side by side with ``dps``: uniform
attention (their query zeroing) at decode time, shared prefill, entropy-adaptive γ, the
``history`` prompt. Pair it with ``dps-lens discover --mode oproj_slice`` for their PCS."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from dps_lens.data.prompts import get_template
from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    MaskedRun,
    Steering,
    SteeringContext,
    register_method,
)
from dps_lens.steering.methods.decore import DecoreConfig

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class ReferenceConfig(DecoreConfig):
    """DeCoRe's contrast with the masked run sharing the full run's prompt cache."""

    name = "reference"
    description = "the authors' decoding (uniform attention, shared prefill, entropy γ)"
    masked_run: ClassVar[MaskedRun] = "shared_prefill"

    def build(self, context: SteeringContext) -> Steering:
        return replace(super().build(context), template=get_template("history"))


def reference(model: TransformerBridge, heads: HeadsOrWeights, gamma_cap: float = 2.0) -> Steering:
    """The authors' decoding with ``heads``."""
    return ReferenceConfig(gamma_cap).build(SteeringContext(model, heads=heads))
