"""``cad``: Context-Aware Decoding, ``(1+α)·log p(y | x, u) − α·log p(y | x)``: the prompt with the
profile against the prompt without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dps_lens.checks import check_float
from dps_lens.steering.methods.base import MethodConfig, Steering, SteeringContext, register_method
from dps_lens.steering.rules import ContrastRule


@register_method
@dataclass(frozen=True)
class CADConfig(MethodConfig):
    name = "cad"
    description = "the prompt with the profile against the prompt without it"

    alpha: float = 1.0  # contrast strength α >= 0
    beta: float | None = None  # plausibility constraint in (0, 1]; None = off

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha, low=0)
        check_float("beta", self.beta, low=0, high=1, low_open=True)

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"alpha": alpha} for alpha in (0.25, 0.5, 1.0)]

    def build(self, context: SteeringContext) -> Steering:
        return Steering(
            name=self.name, contrast="profile", rule=ContrastRule(self.alpha, beta=self.beta)
        )


def cad(alpha: float = 1.0, beta: float | None = None) -> Steering:
    """Context-Aware Decoding with strength ``alpha``."""
    return Steering(name="cad", contrast="profile", rule=ContrastRule(alpha, beta=beta))
