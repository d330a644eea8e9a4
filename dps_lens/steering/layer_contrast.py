"""DoLa's contrast of layers (Chuang et al. 2024): the final layer against a premature one.

At every step, each candidate premature layer ``j`` gives early-exit log-probabilities
``log q_j`` (the residual stream after block ``j`` through the final norm and the unembedding).
The premature layer ``M`` is the candidate of largest Jensen–Shannon divergence from the final
layer's ``q_N``, per row; the scores are ``log q_N − log q_M`` on the tokens with
``q_N ≥ α · max q_N`` (the adaptive plausibility constraint) and ``−inf`` elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.errors import DpsLensError


def jensen_shannon(
    p_log: Float[Tensor, "*rows vocab"], q_log: Float[Tensor, "*rows vocab"]
) -> Float[Tensor, "*rows"]:
    """JSD(p ‖ q) in nats from log-probabilities, per row."""
    mixture = torch.logaddexp(p_log, q_log) - math.log(2)
    p_part = (p_log.exp() * (p_log - mixture)).nansum(-1)
    q_part = (q_log.exp() * (q_log - mixture)).nansum(-1)
    return 0.5 * (p_part + q_part)


def candidate_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    """Premature layers from ``spec``: ``low`` (every other block of the first half), ``high``
    (every other block of the second half, the last block excluded) or comma-separated block
    indices in ``0..n_layers-2``."""
    if spec == "low":
        return tuple(range(0, max(n_layers // 2, 1), 2))
    if spec == "high":
        return tuple(range(n_layers // 2, n_layers - 1, 2)) or (max(n_layers - 2, 0),)
    try:
        layers = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise DpsLensError(
            f"premature layers take low, high or comma-separated integers, got {spec!r}"
        ) from None
    bad = [layer for layer in layers if not 0 <= layer <= n_layers - 2]
    if not layers or bad:
        raise DpsLensError(
            f"premature layers {list(bad or layers)} out of range: this model's premature layers "
            f"are 0..{n_layers - 2} (the last block is the final layer)"
        )
    return layers


@dataclass(frozen=True)
class LayerContrast:
    """The candidate premature ``layers`` (blocks whose output is read early) and the
    plausibility threshold ``alpha`` in (0, 1]."""

    layers: tuple[int, ...]
    alpha: float = 0.1

    def __post_init__(self) -> None:
        if not self.layers:
            raise DpsLensError("DoLa needs at least one candidate premature layer")
        check_float("plausibility", self.alpha, low=0.0, high=1.0, low_open=True)

    def hook_names(self) -> list[str]:
        return [f"blocks.{layer}.hook_resid_post" for layer in self.layers]

    def select(
        self,
        final_logits: Float[Tensor, "batch vocab"],
        early_logits: Float[Tensor, "n_candidates batch vocab"],
    ) -> Int[Tensor, " batch"]:
        """Index (into ``layers``) of each row's premature layer: the largest JSD from the final."""
        final = final_logits.float().log_softmax(-1)
        early = early_logits.float().log_softmax(-1)
        return jensen_shannon(final.expand_as(early), early).argmax(0)

    def combine(
        self,
        final_logits: Float[Tensor, "batch vocab"],
        early_logits: Float[Tensor, "n_candidates batch vocab"],
    ) -> Float[Tensor, "batch vocab"]:
        """``log q_N − log q_M`` on the plausible tokens, ``−inf`` elsewhere (float32)."""
        final = final_logits.float().log_softmax(-1)
        chosen = self.select(final_logits, early_logits)
        rows = torch.arange(final.shape[0], device=final.device)
        premature = early_logits.float().log_softmax(-1)[chosen, rows]
        threshold = final.max(-1, keepdim=True).values + math.log(self.alpha)
        return (final - premature).masked_fill(final < threshold, float("-inf"))
