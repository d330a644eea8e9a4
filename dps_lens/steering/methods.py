"""What a steered decoder contrasts: DPS and the paper's baselines as one ``Steering`` spec.

* ``plain``: the model alone (no contrast).
* ``dps``: the full model against the model with the preference heads masked (weights ``w``: head
  scaled by ``1 - w`` in ``mode``). ``masked_run="exact"`` masks the heads on the prompt too;
  ``"shared_prefill"`` lets the masked run reuse the full run's prompt cache (heads masked on the
  last prompt token and on generated tokens only: the authors' shortcut).
* ``cad``: Context-Aware Decoding, the prompt with the profile against the prompt without it.
* ``random_heads``: DPS with as many heads drawn at random from outside the given set.
* ``decore``: DeCoRe-style, masking by uniform attention with entropy-adaptive strength.
* ``reference``: the authors' code: uniform attention (their query zeroing) at decode time,
  shared prefill, entropy-adaptive γ, the ``history`` prompt.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from jaxtyping import Float
from torch import Tensor

from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.errors import DpsLensError
from dps_lens.interventions import MASK_MODES, Head, HeadMask, MaskMode, as_mask
from dps_lens.steering.rules import ContrastRule

Contrast = Literal["none", "heads", "profile"]
MaskedRun = Literal["exact", "shared_prefill"]
MASKED_RUNS: tuple[str, ...] = ("exact", "shared_prefill")
METHODS: tuple[str, ...] = (
    "plain",
    "dps",
    "dps_shared_prefill",
    "cad",
    "random_heads",
    "decore",
    "reference",
)


@dataclass(frozen=True)
class Steering:
    """A decoding method. ``weights`` is ``[n_layers, n_heads]`` or one map per input
    ``[n_inputs, n_layers, n_heads]`` (for per-user routing); ``means`` serves ``mode="mean"``."""

    name: str = "plain"
    contrast: Contrast = "none"
    rule: ContrastRule = field(default_factory=ContrastRule)
    weights: Float[Tensor, "... n_layers n_heads"] | None = None
    mode: MaskMode = "zero"
    masked_run: MaskedRun = "exact"
    means: Float[Tensor, "n_layers n_heads d_head"] | None = None
    template: PromptTemplate | None = None

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise DpsLensError(f"unknown mask mode {self.mode!r}; use one of {MASK_MODES}")
        if self.masked_run not in MASKED_RUNS:
            raise DpsLensError(
                f"unknown masked_run {self.masked_run!r}; use one of {', '.join(MASKED_RUNS)}"
            )
        if self.contrast == "heads" and self.weights is None:
            raise DpsLensError(f"method {self.name!r} needs heads or a head weight map")
        if self.mode == "mean" and self.contrast == "heads" and self.means is None:
            raise DpsLensError(
                "mode='mean' needs reference means: pass means=head_means(model, ...) "
                "(or dps_lens.organism.rates.reference_means)"
            )

    @property
    def heads(self) -> list[Head]:
        return HeadMask(self.weights).heads if self.weights is not None else []


HeadsOrWeights = HeadMask | Tensor | Iterable[Sequence[int]]


def plain() -> Steering:
    return Steering()


def dps(
    model: Any,
    heads: HeadsOrWeights,
    gamma: float = 1.0,
    adaptive: bool = False,
    gamma_cap: float = 2.0,
    beta: float | None = None,
    mode: MaskMode = "zero",
    masked_run: MaskedRun = "exact",
    means: Tensor | None = None,
    name: str = "dps",
) -> Steering:
    """Differential Preference Steering with ``heads`` (pairs, a ``HeadMask`` or weights)."""
    weights = as_mask(model, heads).weights
    return Steering(
        name=name,
        contrast="heads",
        rule=ContrastRule(gamma, adaptive, gamma_cap, beta),
        weights=weights,
        mode=mode,
        masked_run=masked_run,
        means=means,
    )


def cad(alpha: float = 1.0, beta: float | None = None) -> Steering:
    """Context-Aware Decoding: ``(1+α)·log p(y | x, u) − α·log p(y | x)``."""
    return Steering(name="cad", contrast="profile", rule=ContrastRule(alpha, beta=beta))


def draw_random_heads(
    heads: Sequence[Head], n_layers: int, n_heads: int, seed: int = 0
) -> list[Head]:
    """``len(heads)`` heads drawn (seeded) from those of an ``n_layers × n_heads`` model not in ``heads``."""
    chosen = {tuple(h) for h in heads}
    others = [(l, h) for l in range(n_layers) for h in range(n_heads) if (l, h) not in chosen]
    if len(others) < len(chosen):
        raise DpsLensError(
            f"cannot draw {len(chosen)} random heads outside the set: the model has only "
            f"{n_layers * n_heads} heads"
        )
    return random.Random(seed).sample(others, len(chosen))


def random_heads(model: Any, heads: Sequence[Head], seed: int = 0, **dps_args: Any) -> Steering:
    """DPS with ``len(heads)`` heads drawn (seeded) from the heads not in ``heads``."""
    drawn = draw_random_heads(heads, int(model.cfg.n_layers), int(model.cfg.n_heads), seed)
    return dps(model, drawn, name="random_heads", **dps_args)


def decore(model: Any, heads: HeadsOrWeights, gamma_cap: float = 2.0) -> Steering:
    """DeCoRe-style contrast: heads masked by uniform attention, γ = entropy (capped)."""
    return dps(model, heads, adaptive=True, gamma_cap=gamma_cap, mode="uniform", name="decore")


def reference(model: Any, heads: HeadsOrWeights, gamma_cap: float = 2.0) -> Steering:
    """The authors' decoding choices, to compare side by side with ``dps``."""
    return replace(
        dps(
            model,
            heads,
            adaptive=True,
            gamma_cap=gamma_cap,
            mode="uniform",
            masked_run="shared_prefill",
            name="reference",
        ),
        template=get_template("history"),
    )


def build(
    method: str,
    model: Any,
    heads: Sequence[Head] = (),
    gamma: float = 1.0,
    seed: int = 0,
    **dps_args: Any,
) -> Steering:
    """A method by name (``METHODS``), for the CLI and studies."""
    if method not in METHODS:
        raise DpsLensError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "plain":
        return plain()
    if method == "cad":
        return cad(gamma, beta=dps_args.get("beta"))
    if not heads:
        raise DpsLensError(
            f"method {method!r} needs heads (pass --heads FILE from dps-lens discover)"
        )
    if method == "dps":
        return dps(model, heads, gamma=gamma, **dps_args)
    if method == "dps_shared_prefill":
        shared = {**dps_args, "masked_run": "shared_prefill"}
        return dps(model, heads, gamma=gamma, name=method, **shared)
    if method == "random_heads":
        return random_heads(model, heads, seed=seed, gamma=gamma, **dps_args)
    if method == "decore":
        return decore(model, heads, gamma_cap=dps_args.get("gamma_cap", 2.0))
    return reference(model, heads, gamma_cap=dps_args.get("gamma_cap", 2.0))
