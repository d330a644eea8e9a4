"""``amplify``: ``z ← (1 + α)·z`` at ``hook_z``, the opposite of masking (``α = 0``: the clean
model; ``w = 1`` with ``α = −1`` would be zero ablation)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.interventions.ablation import AblationInputs, HookZAblation, register_ablation


@register_ablation
@dataclass(frozen=True)
class Amplify(HookZAblation):
    name = "amplify"
    score_sign = -1  # a scan scores how much amplifying the head lowers the loss
    description = "the head's output scaled by 1 + alpha"

    alpha: float = 1.0  # amplification α >= 0: the head's output times 1 + α

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha, low=0)

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        return value * (1 + self.alpha)
