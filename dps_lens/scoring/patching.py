"""Activation patching between the prompt with the profile and the prompt without it.

Both prompts end in the same target tokens, so the positions that predict the target (the label
positions) pair up one to one. ``noising`` copies a head's ``hook_z`` at those positions from the
no-profile run into the with-profile run and scores ``L(patched) − L(with profile)``; ``denoising``
copies it the other way and scores ``L(no profile) − L(patched)``. Either way a positive score
means the head carries what the profile adds. Several heads of a layer are patched in one forward
(one forked copy each, as in the exact scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.data.encoding import EncodedExample, collate
from dps_lens.fork import fork_at
from dps_lens.scoring.loss import forward_nll

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge import TransformerBridge

DIRECTIONS = ("noising", "denoising")


def label_index(encoded: EncodedExample) -> Tensor:
    """Positions whose next token is a target token."""
    return torch.arange(encoded.target_start - 1, len(encoded.input_ids) - 1)


@torch.no_grad()
def source_activations(
    model: TransformerBridge, encoded: Sequence[EncodedExample], pad_id: int
) -> list[Float[Tensor, "n_layers n_labels n_heads d_head"]]:
    """Every head's ``hook_z`` at the label positions of each example (run one batch)."""
    batch = collate(encoded, pad_id)
    n_layers = int(model.cfg.n_layers)
    cache: list[Tensor] = []
    hooks = [
        (f"blocks.{layer}.attn.hook_z", lambda z, hook: cache.append(z.detach()))
        for layer in range(n_layers)
    ]
    with model.hooks(fwd_hooks=hooks):
        model(batch.tokens.to(model.cfg.device), return_type=None)
    stacked = torch.stack(cache, dim=1)  # [batch, n_layers, pos, n_heads, d_head]
    return [stacked[row, :, label_index(e)] for row, e in enumerate(encoded)]


@torch.no_grad()
def patched_losses(
    model: TransformerBridge,
    base: Sequence[EncodedExample],
    sources: Sequence[Tensor],
    layer: int,
    heads: Sequence[int],
    pad_id: int,
) -> Float[Tensor, " cells"]:
    """Target NLL of each (head, example) cell, copy-major, with that head's ``hook_z`` at the
    label positions of ``base`` replaced by ``sources`` (from ``source_activations``)."""
    batch = collate(base, pad_id)
    copies, n_rows = len(heads), len(base)
    rows, positions, head_index, values = [], [], [], []
    for copy, head in enumerate(heads):
        for r, (encoded, source) in enumerate(zip(base, sources, strict=True)):
            index = label_index(encoded)
            rows.append(torch.full_like(index, copy * n_rows + r))
            positions.append(index)
            head_index.append(torch.full_like(index, head))
            values.append(source[layer, :, head])
    where = tuple(torch.cat(t).to(model.cfg.device) for t in (rows, positions, head_index))
    patch = torch.cat(values).to(model.cfg.device)

    def hook(z: Tensor, hook: HookPoint) -> Tensor:
        z = z.clone()
        z[where] = patch.to(z.dtype)
        return z

    with fork_at(model, layer, copies), model.hooks([(f"blocks.{layer}.attn.hook_z", hook)]):
        return forward_nll(model, batch, copies)
