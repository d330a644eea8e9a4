"""What ``steer`` and ``evaluate`` share: the method configs and the context they are built with."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dps_lens.cli.method_flags import method_configs
from dps_lens.cli.options import DecodeOptions
from dps_lens.data import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.interventions import reference_means
from dps_lens.selection import read_heads
from dps_lens.steering import Steering, SteeringContext

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def stop_ids(model: TransformerBridge, tokens: Sequence[str]) -> tuple[int, ...]:
    """Token ids of ``--stop`` strings, each of which must be one token."""
    ids = []
    for token in tokens:
        encoded = model.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise DpsLensError(
                f"--stop {token!r} is {len(encoded)} tokens for this tokenizer; give single tokens"
            )
        ids.append(int(encoded[0]))
    return tuple(ids)


@dataclass(frozen=True)
class Decoding:
    """The ``Steering`` of every requested method (by its label), and the stop ids."""

    steerings: dict[str, Steering]
    stop: tuple[int, ...]


def build_decoding(
    specs: str,
    config: DecodeOptions,
    namespace: argparse.Namespace,
    model: TransformerBridge,
    examples: Sequence[PreferenceExample] | None,
) -> Decoding:
    """Build the method ``specs`` (``--methods``) from the command line, keyed by label: heads
    read once, reference means computed once."""
    configs = method_configs(specs, namespace, config)
    heads = None
    if config.heads is not None and any(c.needs_heads for c in configs.values()):
        model_id = None if config.allow_other_model else str(model.cfg.model_name)
        heads = read_heads(config.heads, config.k, model_id=model_id)
    means = None
    if any(c.needs_means for c in configs.values()):
        if not examples:
            raise DpsLensError("mean ablation needs --data (head means come from its prompts)")
        means = reference_means(model, examples)
    context = SteeringContext(
        model, heads=heads, means=means, examples=examples, source=config.heads, k=config.k
    )
    steerings = {name: method.build(context) for name, method in configs.items()}
    return Decoding(steerings, stop_ids(model, config.stop))
