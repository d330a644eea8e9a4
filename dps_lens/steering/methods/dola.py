"""``dola``: Decoding by Contrasting Layers (Chuang et al. 2024), the final layer against the
premature layer of largest Jensen–Shannon divergence, chosen per step from a candidate bucket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dps_lens.checks import check_float
from dps_lens.steering.layer_contrast import LayerContrast, candidate_layers
from dps_lens.steering.methods.base import MethodConfig, Steering, SteeringContext, register_method


@register_method
@dataclass(frozen=True)
class DoLaConfig(MethodConfig):
    name = "dola"
    description = "the final layer against the premature layer of largest JS divergence"

    # DoLa's candidate premature layers: low, high (halves of the blocks) or indices, e.g. 2,4
    premature_layers: str = "high"
    plausibility: float = 0.1  # DoLa: only tokens with p >= plausibility * max p, in (0, 1]

    def __post_init__(self) -> None:
        check_float("plausibility", self.plausibility, low=0, high=1, low_open=True)
        if self.premature_layers not in ("low", "high"):
            candidate_layers(self.premature_layers, n_layers=10**6)  # syntax now, range at build

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"premature_layers": "high"}, {"premature_layers": "low"}]

    def build(self, context: SteeringContext) -> Steering:
        layers = candidate_layers(self.premature_layers, int(context.model.cfg.n_layers))
        return Steering(
            name=self.name, contrast="layers", layers=LayerContrast(layers, self.plausibility)
        )


def dola(model_layers: int, premature_layers: str = "high", plausibility: float = 0.1) -> Steering:
    """DoLa over the candidate ``premature_layers`` of a model with ``model_layers`` blocks."""
    layers = candidate_layers(premature_layers, model_layers)
    return Steering(name="dola", contrast="layers", layers=LayerContrast(layers, plausibility))
