"""``dps``: Differential Preference Steering, the full model against the model with the
preference heads masked (head scaled by ``1 − w`` by the ablation ``mode``).

``masked_run="exact"`` masks the heads on the prompt too; ``"shared_prefill"`` lets the masked
run reuse the full run's prompt cache (heads masked on the last prompt token and on generated
tokens only: the authors' shortcut), registered as its own method ``dps_shared_prefill``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dps_lens.checks import check_float
from dps_lens.interventions import as_mask, get_ablation
from dps_lens.steering.methods.base import (
    HeadsOrWeights,
    MaskedRun,
    MethodConfig,
    Steering,
    SteeringContext,
    register_method,
)
from dps_lens.steering.rules import ContrastRule

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@register_method
@dataclass(frozen=True)
class DPSConfig(MethodConfig):
    """``ℓ̃ = (1+γ)·log p_full − γ·log p_masked``; ``adaptive``: γ = entropy of p_full capped at
    ``gamma_cap``; ``beta``: only tokens with ``p_full ≥ β·max p_full`` may win."""

    name = "dps"
    needs_heads = True
    description = "the model against itself with the preference heads masked"

    gamma: float = 1.0  # contrast strength γ >= 0
    adaptive: bool = False  # γ = entropy of the full model's distribution, capped at gamma_cap
    gamma_cap: float = 2.0  # cap of the adaptive γ (nats)
    beta: float | None = None  # plausibility constraint in (0, 1]; None = off
    mode: str = "zero"  # how heads are masked: a registered ablation
    masked_run: MaskedRun = "exact"  # exact, or shared_prefill (the authors' prompt-cache shortcut)

    def __post_init__(self) -> None:
        check_float("gamma", self.gamma, low=0)
        check_float("gamma_cap", self.gamma_cap, low=0)
        check_float("beta", self.beta, low=0, high=1, low_open=True)
        get_ablation(self.mode)

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        """γ ∈ {0.25, 0.5, 1} × {entropy-adaptive capped at γ, fixed} × β ∈ {0.1, off}: at each
        γ the adaptive γ (never above its cap) and the plausibility constraint are weaker."""
        return [
            {"gamma_cap": g, "adaptive": True, "beta": beta} if adaptive
            else {"gamma": g, "adaptive": False, "beta": beta}
            for g in (0.25, 0.5, 1.0)
            for adaptive in (True, False)
            for beta in (0.1, None)
        ]  # fmt: skip

    @property
    def ablation_mode(self) -> str | None:
        return self.mode

    def rule(self) -> ContrastRule:
        return ContrastRule(self.gamma, self.adaptive, self.gamma_cap, self.beta)

    def with_heads(self, context: SteeringContext, heads: HeadsOrWeights) -> Steering:
        """This config's ``Steering`` with ``heads`` (pairs, a mask or a weight map) masked."""
        return Steering(
            name=self.name,
            contrast="heads",
            rule=self.rule(),
            weights=as_mask(context.model, heads).weights,
            mode=self.mode,
            masked_run=self.masked_run,
            means=context.means,
        )

    def build(self, context: SteeringContext) -> Steering:
        return self.with_heads(context, context.require_heads(self.name))


@register_method
@dataclass(frozen=True)
class DPSSharedPrefillConfig(DPSConfig):
    name = "dps_shared_prefill"
    description = "DPS whose masked run reuses the full run's prompt cache"

    masked_run: MaskedRun = "shared_prefill"


def dps(
    model: TransformerBridge,
    heads: HeadsOrWeights,
    gamma: float = 1.0,
    adaptive: bool = False,
    gamma_cap: float = 2.0,
    beta: float | None = None,
    mode: str = "zero",
    masked_run: MaskedRun = "exact",
    means: Tensor | None = None,
) -> Steering:
    """Differential Preference Steering with ``heads`` (pairs, a ``HeadMask`` or weights)."""
    config = DPSConfig(gamma, adaptive, gamma_cap, beta, mode, masked_run)
    return config.build(SteeringContext(model, heads=heads, means=means))
