"""Methods that edit the chosen heads in the model's one run (no contrast): the shared part of
``attention_emphasis``, ``head_shift`` and ``amplify``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from dps_lens.interventions import Ablation, as_mask, get_ablation
from dps_lens.steering.methods.base import HeadsOrWeights, MethodConfig, Steering, SteeringContext


@dataclass(frozen=True)
class HeadEditConfig(MethodConfig, ABC):
    """A method whose one forward runs with ``intervention`` at the heads (weights in [0, 1])."""

    needs_heads = True

    @abstractmethod
    def intervention(self, context: SteeringContext) -> Ablation:
        """The configured edit applied at every chosen head."""

    def with_heads(self, context: SteeringContext, heads: HeadsOrWeights) -> Steering:
        """This config's ``Steering`` with ``heads`` (pairs, a mask or a weight map) edited."""
        return Steering(
            name=self.name,
            contrast="edit",
            weights=as_mask(context.model, heads).weights,
            mode=self.intervention(context),
            means=context.means,
        )

    def build(self, context: SteeringContext) -> Steering:
        return self.with_heads(context, context.require_heads(self.name))


@dataclass(frozen=True)
class StrengthEditConfig(HeadEditConfig):
    """A head edit that is one registered intervention (``ablation``) at strength ``alpha``,
    tuned over ``alphas`` (weakest first: a tie in tuning goes to the earlier)."""

    ablation: ClassVar[str]
    alphas: ClassVar[tuple[float, ...]]

    alpha: float = 1.0

    def __post_init__(self) -> None:
        get_ablation(self.ablation, alpha=self.alpha)  # checks alpha

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        return [{"alpha": alpha} for alpha in cls.alphas]

    def intervention(self, context: SteeringContext) -> Ablation:
        return get_ablation(self.ablation, alpha=self.alpha)
