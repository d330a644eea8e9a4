"""The DPS contrast rule on next-token log-probabilities.

``combined = (1 + γ) · log p_pref − γ · log p_gen``, where ``p_pref`` comes from the full model and
``p_gen`` from the model with the preference heads masked. ``γ`` is fixed, or per row the entropy
(nats) of ``p_pref`` capped at ``gamma_cap`` (the authors' adaptive rule). With ``beta`` set, only
tokens with ``p_pref ≥ β · max p_pref`` may win (the contrastive-decoding plausibility constraint).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class ContrastRule:
    """``gamma`` ≥ 0; ``adaptive`` replaces it by min(entropy of p_pref, ``gamma_cap``)."""

    gamma: float = 1.0
    adaptive: bool = False
    gamma_cap: float = 2.0
    beta: float | None = None

    def __post_init__(self) -> None:
        check_float("gamma", self.gamma, low=0.0)
        check_float("gamma_cap", self.gamma_cap, low=0.0)
        check_float("beta", self.beta, low=0.0, high=1.0, low_open=True)
        if not isinstance(self.adaptive, bool):
            raise DpsLensError(f"adaptive must be True or False, got {self.adaptive!r}")

    def gammas(self, pref_logprobs: Float[Tensor, "batch vocab"]) -> Float[Tensor, " batch"]:
        """The contrast strength of every row."""
        if not self.adaptive:
            return torch.full(pref_logprobs.shape[:1], self.gamma, device=pref_logprobs.device)
        entropy = -(pref_logprobs.exp() * pref_logprobs).nansum(-1)
        return entropy.clamp(max=self.gamma_cap)

    def combine(
        self,
        pref_logits: Float[Tensor, "batch vocab"],
        gen_logits: Float[Tensor, "batch vocab"],
    ) -> Float[Tensor, "batch vocab"]:
        """Combined scores (float32); implausible tokens get ``-inf`` when ``beta`` is set."""
        pref = pref_logits.float().log_softmax(-1)
        gen = gen_logits.float().log_softmax(-1)
        gamma = self.gammas(pref)[:, None]
        combined = (1 + gamma) * pref - gamma * gen
        if self.beta is not None:
            threshold = pref.max(-1, keepdim=True).values + torch.log(torch.tensor(self.beta))
            combined = combined.masked_fill(pref < threshold, float("-inf"))
        return combined
