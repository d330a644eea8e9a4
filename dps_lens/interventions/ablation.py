"""The ``Ablation`` protocol and its registry: every way of removing a head, by name.

An ablation acts at one hook point of every attention block (``blocks.{l}.attn.<hook>``) and
interpolates between the clean value (weight ``w = 0``) and the fully ablated value ``target``
(``w = 1``): ``value · (1 − w) + w · target``, with ``w`` broadcast per batch row and head.
Discovery (the PCS scan, attribution) and steering use the same registered objects; a new mode
is one class decorated with ``@register_ablation``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.errors import DpsLensError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class AblationInputs:
    """Reference data an ablation may need: per-head means, and the non-padding keys."""

    means: Float[Tensor, "n_layers n_heads d_head"] | None = None
    key_mask: Bool[Tensor, "batch key"] | None = None


class Ablation(ABC):
    """How one head is removed. Subclasses set ``name`` and ``hook`` and define ``target`` and
    ``weights_like``; ``needs_means`` marks modes that need reference means."""

    name: ClassVar[str]
    hook: ClassVar[str]  # hook point under blocks.{l}.attn, e.g. "hook_z"
    needs_means: ClassVar[bool] = False
    attribution: ClassVar[bool] = False  # acts on hook_z: attribution patching can estimate it
    description: ClassVar[str] = ""

    def check(self, model: TransformerBridge, inputs: AblationInputs) -> None:
        """Raise a ``DpsLensError`` naming the fix when this ablation cannot run on ``model``."""
        if self.needs_means and inputs.means is None:
            raise DpsLensError(
                f"mode={self.name!r} needs the reference means: pass means=head_means(model, ...) "
                "or reference_means(model, examples)"
            )

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.attn.{self.hook}"

    @abstractmethod
    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        """The fully ablated value (every head at ``w = 1``), broadcastable to ``value``."""

    @abstractmethod
    def weights_like(self, weights: Float[Tensor, "batch n_heads"], value: Tensor) -> Tensor:
        """Per-row head weights reshaped to broadcast against ``value``."""

    def apply(
        self,
        value: Tensor,
        weights: Float[Tensor, "batch n_heads"],
        layer: int,
        inputs: AblationInputs,
    ) -> Tensor:
        """``value · (1 − w) + w · target``."""
        w = self.weights_like(weights.to(device=value.device, dtype=value.dtype), value)
        target = self.target(value, layer, inputs)
        return value * (1 - w) + w * target.to(device=value.device, dtype=value.dtype)


class HookZAblation(Ablation, ABC):
    """An ablation of the per-head vector ``z`` entering the output projection: ``[batch, pos,
    head, d_head]`` at ``blocks.{l}.attn.hook_z``."""

    hook: ClassVar[str] = "hook_z"
    attribution: ClassVar[bool] = True

    def weights_like(self, weights: Tensor, value: Tensor) -> Tensor:
        return weights[:, None, :, None]


ABLATIONS: dict[str, Ablation] = {}


AblationType = TypeVar("AblationType", bound=Ablation)


def register_ablation(cls: type[AblationType]) -> type[AblationType]:
    """Class decorator: make ``cls`` available by its ``name`` everywhere a mode is accepted."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise DpsLensError(f"ablation class {cls.__name__} needs a non-empty `name`")
    ABLATIONS[name] = cls()
    return cls


def ablation_names() -> tuple[str, ...]:
    """Registered modes, in registration order."""
    return tuple(ABLATIONS)


def get_ablation(name: str) -> Ablation:
    """The registered ablation called ``name``."""
    try:
        return ABLATIONS[name]
    except KeyError:
        raise DpsLensError(
            f"unknown mask mode {name!r}; use one of {', '.join(ABLATIONS)}"
        ) from None
