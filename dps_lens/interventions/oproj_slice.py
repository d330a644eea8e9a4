"""``oproj_slice``: the authors' PCS ablation, kept to reproduce their rankings.

It scales dims ``[h·d_head, (h+1)·d_head)`` of the attention output *after* the output projection
(``hook_out``, residual space) by ``1 − w``. That is not a head ablation: those residual dims mix
every head's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.interventions.ablation import Ablation, AblationInputs, register_ablation

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_ablation
class OprojSlice(Ablation):
    name = "oproj_slice"
    hook = "hook_out"
    description = "the authors' slice of the projected attention output (not a head)"

    def check(self, model: TransformerBridge, inputs: AblationInputs) -> None:
        if int(model.cfg.n_heads) * int(model.cfg.d_head) != int(model.cfg.d_model):
            raise DpsLensError(
                "mode='oproj_slice' needs n_heads * d_head == d_model; use mode='zero'"
            )

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        return value.new_zeros(())

    def weights_like(self, weights: Tensor, value: Tensor) -> Tensor:
        return weights.repeat_interleave(value.shape[-1] // weights.shape[-1], dim=-1)[:, None, :]
