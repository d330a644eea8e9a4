"""``plain``: the model alone, greedy or sampled (no contrast)."""

from __future__ import annotations

from dataclasses import dataclass

from dps_lens.steering.methods.base import MethodConfig, Steering, SteeringContext, register_method


@register_method
@dataclass(frozen=True)
class PlainConfig(MethodConfig):
    name = "plain"
    description = "the model alone"

    def build(self, context: SteeringContext) -> Steering:
        return Steering()


def plain() -> Steering:
    """Decoding with the model alone (greedy or sampled, no contrast)."""
    return Steering()
