"""Reference means for mean ablation: each head's mean ``hook_z`` over real tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.data.encoding import collate, encoder_for, pad_id_of, real_token_mask
from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.interventions.mask import model_shape

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge


@torch.no_grad()
def head_means(
    model: TransformerBridge,
    batches: Iterable[tuple[Tensor, Tensor]],
) -> Float[Tensor, "n_layers n_heads d_head"]:
    """Mean ``hook_z`` of every head over the real (non-padding) tokens of ``batches``.

    ``batches`` yields ``(tokens [batch, pos], real_token_mask [batch, pos])``, each batch with
    its own ``batch`` and ``pos``.
    """
    n_layers, n_heads = model_shape(model)
    total = torch.zeros(n_layers, n_heads, int(model.cfg.d_head), dtype=torch.float64)
    count = 0
    current: dict[str, Tensor] = {}

    def accumulate(layer: int):
        def hook(z: Tensor, hook: HookPoint) -> None:
            real = current["mask"].to(z.device)
            total[layer] += z[real].double().sum(0).cpu()

        return hook

    hooks = [(f"blocks.{layer}.attn.hook_z", accumulate(layer)) for layer in range(n_layers)]
    with model.hooks(fwd_hooks=hooks):
        for tokens, real in batches:
            current["mask"] = real
            model(tokens.to(model.cfg.device), return_type=None)
            count += int(real.sum())
    if count == 0:
        raise DpsLensError("head means need at least one reference token")
    return (total / count).float()


def reference_means(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    template: PromptTemplate | None = None,
    batch_size: int = 64,
) -> Float[Tensor, "n_layers n_heads d_head"]:
    """Mean ``hook_z`` per head over the prompts (no target) of ``examples``: the reference of
    mean ablation when steering (the scan uses its scored sequences instead)."""
    if not examples:
        raise DpsLensError("mean ablation needs reference examples (head means come from prompts)")
    encoder = encoder_for(model, template or get_template("history"))
    prompts = encoder.encode_many(examples, with_target=False)
    pad_id = pad_id_of(model.tokenizer)
    chunks = [prompts[s : s + batch_size] for s in range(0, len(prompts), batch_size)]
    return head_means(model, ((collate(c, pad_id).tokens, real_token_mask(c)) for c in chunks))
