"""What a steered decoder contrasts (``Steering``) and the registry of decoding methods.

A method is a frozen config dataclass registered by name with ``@register_method``: its fields
are the method's parameters (the CLI turns them into flags), and ``build`` turns it, with the
heads and reference data of a ``SteeringContext``, into the ``Steering`` that ``generate`` runs.
Parameter sweeps are lists of configs, never names with parameters encoded in them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from jaxtyping import Float
from torch import Tensor

from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate
from dps_lens.errors import DpsLensError
from dps_lens.heads import Head
from dps_lens.interventions import Ablation, HeadDirections, HeadMask, get_ablation
from dps_lens.plugins import load_plugins
from dps_lens.steering.layer_contrast import LayerContrast
from dps_lens.steering.rules import ContrastRule

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Contrast = Literal["none", "heads", "profile", "layers", "edit"]
MaskedRun = Literal["exact", "shared_prefill"]
MASKED_RUNS: tuple[str, ...] = ("exact", "shared_prefill")
HeadsOrWeights = HeadMask | Tensor | Iterable[Sequence[int]]


@dataclass(frozen=True)
class Steering:
    """A decoding method ready to run. ``contrast``: none, the model with ``weights``' heads masked
    (``heads``), the prompt without its profile (``profile``), premature layers (``layers``), or
    no contrast but one run with ``weights``' heads edited by ``mode`` (``edit``).
    ``weights`` is ``[n_layers, n_heads]`` or one map per input ``[n_inputs, n_layers, n_heads]``
    (per-user routing); ``mode`` is a registered ablation's name or a configured ``Ablation``;
    ``means`` serves mean ablation. ``profile=False`` decodes the prompt without its profile."""

    name: str = "plain"
    contrast: Contrast = "none"
    rule: ContrastRule = field(default_factory=ContrastRule)
    weights: Float[Tensor, "*inputs n_layers n_heads"] | None = None
    mode: str | Ablation = "zero"
    masked_run: MaskedRun = "exact"
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None
    template: PromptTemplate | None = None
    layers: LayerContrast | None = None  # contrast "layers" (DoLa): the premature candidates
    profile: bool = True

    def __post_init__(self) -> None:
        ablation = self.ablation
        if (self.contrast == "layers") != (self.layers is not None):
            raise DpsLensError(
                f"method {self.name!r}: contrast 'layers' goes with a LayerContrast, and only it"
            )
        if self.masked_run not in MASKED_RUNS:
            raise DpsLensError(
                f"unknown masked_run {self.masked_run!r}; use one of {', '.join(MASKED_RUNS)}"
            )
        if self.intervenes and self.weights is None:
            raise DpsLensError(f"method {self.name!r} needs heads or a head weight map")
        if ablation.needs_means and self.intervenes and self.means is None:
            raise DpsLensError(
                f"mode={ablation.name!r} needs reference means: pass "
                "means=dps_lens.interventions.reference_means(model, examples)"
            )
        if not self.profile and self.contrast == "profile":
            raise DpsLensError(f"method {self.name!r}: CAD's contrast needs the profile prompt")

    @property
    def ablation(self) -> Ablation:
        """The configured intervention on ``weights``' heads."""
        return get_ablation(self.mode)

    @property
    def intervenes(self) -> bool:
        """Whether some run of this method has heads intervened on (``heads`` or ``edit``)."""
        return self.contrast in ("heads", "edit")

    @property
    def reads_profile_span(self) -> bool:
        """Whether decoding needs each prompt's profile span and decoded positions."""
        return self.intervenes and self.ablation.needs_layout

    @property
    def heads(self) -> list[Head]:
        return HeadMask(self.weights).heads if self.weights is not None else []


@dataclass(frozen=True)
class SteeringContext:
    """What a method config is built with: the model, the preference heads (pairs, a mask or a
    weight map), reference means, the inputs to decode (in order, for per-input routing), the
    discovery output they came from and the heads' profile directions."""

    model: TransformerBridge
    heads: HeadsOrWeights | None = None
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None
    examples: Sequence[PreferenceExample] | None = None
    source: Path | None = None
    k: int | None = None
    directions: HeadDirections | None = None  # the head shift's (default: read beside source)

    def require_heads(self, method: str) -> HeadsOrWeights:
        heads = self.heads
        if heads is None or (not isinstance(heads, (Tensor, HeadMask)) and not list(heads)):
            raise DpsLensError(
                f"method {method!r} needs heads (pass --heads DIR from dps-lens discover)"
            )
        return heads


@dataclass(frozen=True)
class MethodConfig(ABC):
    """Base of every registered decoding method: a frozen dataclass of its parameters."""

    name: ClassVar[str]
    needs_heads: ClassVar[bool] = False
    description: ClassVar[str] = ""

    @property
    def ablation_mode(self) -> str | None:
        """The ablation its contrast run uses, if it masks heads (decides whether means are needed)."""
        return None

    @property
    def needs_means(self) -> bool:
        mode = self.ablation_mode
        return mode is not None and get_ablation(mode).needs_means

    def params(self) -> dict[str, Any]:
        """The parameters as a plain dict (what result files record)."""
        return dataclasses.asdict(self)

    @classmethod
    def tuning_grid(cls) -> list[dict[str, Any]]:
        """The settings a study tunes this method over, weakest intervention first (so that a
        tie goes to the weaker); ``[{}]``: the defaults alone."""
        return [{}]

    @abstractmethod
    def build(self, context: SteeringContext) -> Steering:
        """The ``Steering`` that ``generate`` runs for this method."""


STEERING_METHODS: dict[str, type[MethodConfig]] = {}


MethodType = TypeVar("MethodType", bound=MethodConfig)


def register_method(cls: type[MethodType]) -> type[MethodType]:
    """Class decorator: make the config dataclass ``cls`` available by its ``name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or not dataclasses.is_dataclass(cls):
        raise DpsLensError(f"steering method {cls.__name__} must be a dataclass with a `name`")
    STEERING_METHODS[name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """Registered methods (plugins included), in registration order."""
    load_plugins()
    return tuple(STEERING_METHODS)


def get_method(name: str) -> type[MethodConfig]:
    """The config class registered as ``name``."""
    if name not in method_names():
        raise DpsLensError(f"unknown method {name!r}; use one of {', '.join(STEERING_METHODS)}")
    return STEERING_METHODS[name]


def method_config(name: str, **params: Any) -> MethodConfig:
    """``name``'s config with ``params`` (unknown parameters are an error naming the valid ones)."""
    cls = get_method(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise DpsLensError(
            f"method {name!r} has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(known)) or 'none'}"
        )
    return cls(**params)
