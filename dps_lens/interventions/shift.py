"""``shift``: Inference-Time Intervention's head shift (Li et al., NeurIPS 2023).

``z_h ← z_h + α·σ_h·θ_h`` at ``hook_z`` on the decoded positions only (the last prompt token and
every answer token, as ITI edits the last position at every decoding step), with ``θ_h`` the unit
direction and ``σ_h`` the standard deviation of the projections on it (``HeadDirections``).
``α = 0`` is the clean model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.errors import DpsLensError
from dps_lens.interventions.ablation import AblationInputs, HookZAblation, register_ablation
from dps_lens.interventions.directions import HeadDirections

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_ablation
@dataclass(frozen=True, eq=False)
class Shift(HookZAblation):
    name = "shift"
    needs_layout = True
    score_sign = -1
    attribution = False
    description = "the head's output shifted by alpha·sigma along its profile direction (ITI)"

    directions: HeadDirections
    alpha: float = 1.0  # shift in standard deviations of the projection (any finite real)

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha)
        if not isinstance(self.directions, HeadDirections):
            raise DpsLensError(
                "mode 'shift' needs HeadDirections (dps_lens.interventions.head_directions)"
            )

    def check(self, model: TransformerBridge, inputs: AblationInputs) -> None:
        """The layout, and directions of the model's shape (``HeadDirections.check_model``, which
        also compares model ids, runs once when a method is built, not at every forward)."""
        super().check(model, inputs)
        shape = (int(model.cfg.n_layers), int(model.cfg.n_heads), int(model.cfg.d_head))
        if tuple(self.directions.directions.shape) != shape:
            self.directions.check_model(model)  # raises, naming the shapes and the fix

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        layout = inputs.require_layout(self.name)
        n_queries = value.shape[1]
        decoded = layout.decoded_positions(inputs.width(n_queries))[:, -n_queries:]
        step = (
            self.alpha * self.directions.scale[layer][:, None] * self.directions.directions[layer]
        )
        step = step.to(device=value.device, dtype=value.dtype)  # [head, d_head]
        return value + decoded[:, :, None, None].to(value.device, value.dtype) * step
