"""The loss of the method: mean negative log-likelihood of the gold target tokens, in float32.

``forward_nll`` asks the model for logits at the label positions only (``logits_to_keep``), so
the unembedding, the largest matrix of a small model, is not applied to the prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.data.encoding import TargetBatch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def label_positions(batch: TargetBatch) -> Int[Tensor, " kept"]:
    """The contiguous range of positions, over all rows, whose next token is a target token."""
    columns = torch.nonzero(batch.label_mask.any(0)).flatten()
    return torch.arange(int(columns.min()), int(columns.max()) + 1)


def target_nll(
    logits: Float[Tensor, "batch pos vocab"],
    batch: TargetBatch,
    positions: Int[Tensor, " kept"] | None = None,
) -> Float[Tensor, " batch"]:
    """``-(1/T) Σ_t log p(y*_t | x, u, y*_<t)`` per row, over the target tokens only (float32, nats).

    ``logits`` cover every position, or only ``positions`` (then ``logits[:, j]`` is position
    ``positions[j]``).
    """
    label_mask = batch.label_mask.to(logits.device)
    labels = batch.tokens[:, 1:].to(logits.device)
    if positions is not None:
        index = positions.to(logits.device)
        label_mask, labels = label_mask[:, index], labels[:, index]
    rows, columns = torch.nonzero(label_mask, as_tuple=True)
    picked = logits[rows, columns].float().log_softmax(-1)
    token_nll = -picked.gather(-1, labels[rows, columns][:, None]).squeeze(-1)
    totals = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    totals.index_add_(0, rows, token_nll)
    return totals / label_mask.sum(-1).clamp_min(1).float()


@torch.no_grad()
def forward_nll(
    model: TransformerBridge, batch: TargetBatch, copies: int = 1
) -> Float[Tensor, " rows"]:
    """Run ``model`` (with whatever hooks are active) and return the per-row target NLL on the CPU.

    With ``copies`` > 1 the active hooks fork the batch (``dps_lens.fork.fork_at``) into that many
    copies: one NLL per row of every copy, copy-major.
    """
    batch = batch.to(model.cfg.device)
    positions = label_positions(batch)
    logits = model(
        batch.tokens, return_type="logits", logits_to_keep=positions.to(model.cfg.device)
    )
    if copies > 1:
        batch = TargetBatch(batch.tokens.repeat(copies, 1), batch.target_mask.repeat(copies, 1))
    return target_nll(logits, batch, positions).cpu()
