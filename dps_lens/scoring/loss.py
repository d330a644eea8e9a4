"""The loss of the method: mean negative log-likelihood of the gold target tokens, in float32."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.data.encoding import TargetBatch


def target_nll(
    logits: Float[Tensor, "batch pos vocab"], batch: TargetBatch
) -> Float[Tensor, " batch"]:
    """``-(1/T) Σ_t log p(y*_t | x, u, y*_<t)`` per row, over the target tokens only (float32, nats)."""
    label_mask = batch.label_mask.to(logits.device)
    labels = batch.tokens[:, 1:].to(logits.device)
    rows, positions = torch.nonzero(label_mask, as_tuple=True)
    picked = logits[rows, positions].float().log_softmax(-1)
    token_nll = -picked.gather(-1, labels[rows, positions][:, None]).squeeze(-1)
    totals = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    totals.index_add_(0, rows, token_nll)
    return totals / label_mask.sum(-1).clamp_min(1).float()


@torch.no_grad()
def forward_nll(model: Any, batch: TargetBatch) -> Float[Tensor, " batch"]:
    """Run ``model`` (with whatever hooks are active) and return the per-row target NLL on the CPU."""
    batch = batch.to(model.cfg.device)
    logits = model(batch.tokens, return_type="logits")
    return target_nll(logits, batch).cpu()
