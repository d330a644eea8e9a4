"""``head_shift``: Inference-Time Intervention's shift (Li et al., NeurIPS 2023) at the chosen
heads: ``z_h ← z_h + α·σ_h·θ_h`` on the decoded positions, along each head's profile direction
(``dps_lens.interventions.head_directions``, read from ``directions.safetensors`` beside the head
set unless given). One forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_lens.checks import check_float
from dps_lens.errors import DpsLensError
from dps_lens.interventions import DIRECTIONS_FILE, Ablation, HeadDirections, get_ablation
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
class HeadShiftConfig(HeadEditConfig):
    name = "head_shift"
    description = "the heads' outputs shifted along their profile directions (ITI)"

    alpha: float = 5.0  # shift in standard deviations of the projection (any finite real)
    directions: Path | None = None  # directions file (default: directions.safetensors in --heads)

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha)

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"alpha": alpha} for alpha in (1.0, 3.0, 8.0)]

    def head_directions(self, context: SteeringContext) -> HeadDirections:
        """The directions given in ``context``, else read from ``directions`` or the head set."""
        if self.directions is None and context.directions is not None:
            found = context.directions
        else:
            path = self.directions
            if path is None:
                if context.source is None:
                    raise DpsLensError(
                        "head_shift needs head directions: pass --directions FILE or a --heads "
                        "directory holding them (dps-lens directions --heads DIR --data FILE)"
                    )
                source = Path(context.source)
                path = (source if source.is_dir() else source.parent) / DIRECTIONS_FILE
            found = HeadDirections.load(path)
        found.check_model(context.model)
        return found

    def intervention(self, context: SteeringContext) -> Ablation:
        return get_ablation("shift", directions=self.head_directions(context), alpha=self.alpha)


def head_shift(
    model: TransformerBridge,
    heads: HeadsOrWeights,
    directions: HeadDirections,
    alpha: float = 5.0,
) -> Steering:
    """ITI's shift of ``heads`` along ``directions`` by ``alpha`` standard deviations."""
    return HeadShiftConfig(alpha).build(SteeringContext(model, heads=heads, directions=directions))
