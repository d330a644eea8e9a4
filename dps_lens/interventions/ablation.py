"""The ``Ablation`` protocol and its registry: every way of intervening on a head, by name.

An ablation acts at one hook point of every attention block (``blocks.{l}.attn.<hook>``) and
interpolates between the clean value (weight ``w = 0``) and the fully edited value ``target``
(``w = 1``): ``value · (1 − w) + w · target``, with ``w`` broadcast per batch row and head.
Most remove the head (zero, mean, uniform attention); others edit it (emphasis on the profile,
amplification, a shift along a direction). Discovery (the PCS scan, attribution) and steering
use the same registered classes; a new mode is one class decorated with ``@register_ablation``.
A mode with parameters is a frozen dataclass whose fields are them (``get_ablation(name,
**params)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from jaxtyping import Bool, Float
from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.interventions.layout import PromptLayout

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class AblationInputs:
    """Reference data an ablation may need: per-head means, the non-padding keys, and where each
    row's prompt, profile and answer sit (``layout``)."""

    means: Float[Tensor, "n_layers n_heads d_head"] | None = None
    key_mask: Bool[Tensor, "batch key"] | None = None
    layout: PromptLayout | None = None

    def require_layout(self, mode: str) -> PromptLayout:
        if self.layout is None:
            raise DpsLensError(
                f"mode={mode!r} acts on the profile span or the decoded positions of each prompt: "
                "pass layout=PromptLayout(...) (scans and generate do this for you)"
            )
        return self.layout

    def width(self, value_width: int) -> int:
        """The full sequence width of the hooked forward: the key mask's (cache included), else
        the hooked value's own (a forward without a cache)."""
        return int(self.key_mask.shape[-1]) if self.key_mask is not None else value_width


class Ablation(ABC):
    """How one head is intervened on. Subclasses set ``name`` and ``hook`` and define ``target``
    and ``weights_like``; ``needs_means`` marks modes that need reference means,
    ``needs_layout`` those that read the prompt layout (profile span, decoded positions).

    ``score_sign`` orients scan scores: ``+1`` scores the loss increase the intervention causes
    (PCS: removing the head hurts), ``−1`` the loss decrease (an edit that helps)."""

    name: ClassVar[str]
    hook: ClassVar[str]  # hook point under blocks.{l}.attn, e.g. "hook_z"
    needs_means: ClassVar[bool] = False
    needs_layout: ClassVar[bool] = False
    attribution: ClassVar[bool] = False  # acts on hook_z: attribution patching can estimate it
    score_sign: ClassVar[int] = 1
    description: ClassVar[str] = ""

    def check(self, model: TransformerBridge, inputs: AblationInputs) -> None:
        """Raise a ``DpsLensError`` naming the fix when this ablation cannot run on ``model``."""
        if self.needs_means and inputs.means is None:
            raise DpsLensError(
                f"mode={self.name!r} needs the reference means: pass means=head_means(model, ...) "
                "or reference_means(model, examples)"
            )
        if self.needs_layout:
            inputs.require_layout(self.name)

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.attn.{self.hook}"

    def identity(self) -> str | dict[str, Any]:
        """What saved results record: the name, with the parameters of a parameterised mode
        (tensors by their SHA-256)."""
        if not dataclasses.is_dataclass(self):
            return self.name
        params = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            digest = getattr(value, "digest", None)
            params[field.name] = digest() if callable(digest) else value
        return {"name": self.name, **params}

    @abstractmethod
    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        """The fully edited value (every head at ``w = 1``), broadcastable to ``value``."""

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


class PatternAblation(Ablation, ABC):
    """An ablation of the attention pattern ``[batch, head, query, key]`` at
    ``blocks.{l}.attn.hook_pattern`` (the softmax output the values are averaged with)."""

    hook: ClassVar[str] = "hook_pattern"

    def weights_like(self, weights: Tensor, value: Tensor) -> Tensor:
        return weights[:, :, None, None]


ABLATIONS: dict[str, type[Ablation]] = {}


AblationType = TypeVar("AblationType", bound=Ablation)


def register_ablation(cls: type[AblationType]) -> type[AblationType]:
    """Class decorator: make ``cls`` available by its ``name`` everywhere a mode is accepted."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise DpsLensError(f"ablation class {cls.__name__} needs a non-empty `name`")
    ABLATIONS[name] = cls
    return cls


def ablation_names() -> tuple[str, ...]:
    """Registered modes, in registration order."""
    return tuple(ABLATIONS)


def ablation_parameters(name: str) -> tuple[str, ...]:
    """The parameters of the registered mode ``name`` (none for a plain class)."""
    cls = ABLATIONS.get(name)
    if cls is None or not dataclasses.is_dataclass(cls):
        return ()
    return tuple(field.name for field in dataclasses.fields(cls))


def get_ablation(name: str | Ablation, **params: Any) -> Ablation:
    """The registered ablation called ``name``, with ``params`` (an ``Ablation`` passes through)."""
    if isinstance(name, Ablation):
        if params:
            raise DpsLensError(f"mode {name.name!r} is already configured; pass no parameters")
        return name
    try:
        cls = ABLATIONS[name]
    except KeyError:
        raise DpsLensError(
            f"unknown mask mode {name!r}; use one of {', '.join(ABLATIONS)}"
        ) from None
    known = ablation_parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise DpsLensError(
            f"mode {name!r} has no parameter {', '.join(unknown)}; "
            f"it takes {', '.join(known) or 'none'}"
        )
    try:
        return cls(**params)
    except TypeError:
        required = [
            f.name
            for f in (dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ())
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        raise DpsLensError(
            f"mode {name!r} needs {', '.join(required)}; it cannot be built from its name alone"
        ) from None


def tensor_digest(*tensors: Tensor) -> str:
    """SHA-256 of tensors' bytes (float32, CPU): the identity of reference data in results."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
