"""``zero``: ``z ← (1 − w)·z`` at ``hook_z``; ``w = 1`` is the model without that head's rows of ``W_O``."""

from __future__ import annotations

from torch import Tensor

from dps_lens.interventions.ablation import AblationInputs, HookZAblation, register_ablation


@register_ablation
class ZeroAblation(HookZAblation):
    name = "zero"
    description = "the head's output set to zero"

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        return value.new_zeros(())
