"""``emphasis``: PASTA's attention steering (Zhang et al., ICLR 2024, "Tell Your Model Where to
Attend"), the profile emphasised at a head.

At ``blocks.{l}.attn.hook_pattern`` the attention of every query on the prompt tokens *outside*
the profile span is multiplied by ``α ∈ (0, 1]`` and each row renormalised, which equals adding
``log α`` to those keys' pre-softmax scores. Answer keys (the target in a scan, generated tokens
when decoding) and the profile keep their scores; a row that puts no attention on the profile is
returned unchanged (renormalising it would give the same row up to rounding). ``α = 1`` is the
clean model; PASTA's default is 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.interventions.ablation import AblationInputs, PatternAblation, register_ablation


@register_ablation
@dataclass(frozen=True)
class Emphasis(PatternAblation):
    name = "emphasis"
    needs_layout = True
    score_sign = -1  # a scan scores how much emphasising the profile at the head lowers the loss
    description = "attention on non-profile prompt tokens scaled by alpha (PASTA)"

    alpha: float = 0.01  # attention kept on prompt tokens outside the profile, in (0, 1]

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha, low=0, high=1, low_open=True)

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        layout = inputs.require_layout(self.name)
        n_keys = value.shape[-1]  # the last n_keys positions (a sliding-window cache keeps fewer)
        profile, others = layout.profile_keys(inputs.width(n_keys))
        profile = profile[:, None, None, -n_keys:].to(value.device)
        others = others[:, None, None, -n_keys:].to(value.device)
        scaled = value * torch.where(others, self.alpha, 1.0).to(value.dtype)
        scaled = scaled / scaled.sum(-1, keepdim=True).clamp_min(torch.finfo(value.dtype).tiny)
        reads_profile = (value * profile).sum(-1, keepdim=True) > 0
        return torch.where(reads_profile, scaled, value)
