"""``mean``: ``z ← (1 − w)·z + w·z̄`` with ``z̄[l, h]`` the head's mean ``hook_z`` over a reference set."""

from __future__ import annotations

from torch import Tensor

from dps_lens.interventions.ablation import AblationInputs, HookZAblation, register_ablation


@register_ablation
class MeanAblation(HookZAblation):
    name = "mean"
    needs_means = True
    description = "the head's output replaced by its mean over reference prompts"

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        assert inputs.means is not None  # checked by Ablation.check
        return inputs.means[layer].to(device=value.device, dtype=value.dtype)
