"""Units of an exact scan: one forward pass ablates several heads of one layer on several examples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dps_lens.data.encoding import EncodedExample, collate, real_token_mask
from dps_lens.fork import fork_at
from dps_lens.heads import Head
from dps_lens.interventions import Ablation, PromptLayout, ablate_heads
from dps_lens.scoring.loss import forward_nll

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class Unit:
    """One forward pass of the scan: ``heads`` of ``layer`` ablated, one copy of the examples each."""

    layer: int
    heads: tuple[int, ...]
    examples: tuple[int, ...]

    def cells(self) -> list[tuple[int, Head]]:
        return [(i, (self.layer, h)) for h in self.heads for i in self.examples]


def plan_units(heads: Sequence[Head], order: Sequence[int], batch_size: int) -> list[Unit]:
    """Group the work: per layer, ``c`` heads × ``e`` examples per forward (``c·e ≤ batch_size``)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    units = []
    for layer, layer_heads in sorted(by_layer.items()):
        n_copies = min(len(layer_heads), batch_size)
        n_examples = max(1, batch_size // n_copies)
        for h in range(0, len(layer_heads), n_copies):
            for e in range(0, len(order), n_examples):
                units.append(
                    Unit(
                        layer,
                        tuple(layer_heads[h : h + n_copies]),
                        tuple(order[e : e + n_examples]),
                    )
                )
    return units


def scan_layout(encoded: Sequence[EncodedExample]) -> PromptLayout:
    """Where the prompt and profile of each scored sequence sit (right-padded, target after)."""
    return PromptLayout.right_padded(
        [e.target_start for e in encoded], [e.profile_span for e in encoded]
    )


def forward_unit(
    model: TransformerBridge,
    encoded: Sequence[EncodedExample],
    unit: Unit,
    pad_id: int,
    ablation: Ablation,
    means: Tensor | None,
) -> Tensor:
    """Target NLL of every cell of ``unit``, copy-major (``[heads × examples]``).

    The examples run blocks below ``unit.layer`` once; the batch is then forked into one copy
    per head (``fork_at``), each with its own head ablated.
    """
    rows = [encoded[i] for i in unit.examples]
    batch = collate(rows, pad_id)
    copies, n_rows = len(unit.heads), len(unit.examples)
    weights = torch.zeros(copies * n_rows, int(model.cfg.n_layers), int(model.cfg.n_heads))
    for copy, head in enumerate(unit.heads):
        weights[copy * n_rows : (copy + 1) * n_rows, unit.layer, head] = 1.0
    key_mask = real_token_mask(rows).repeat(copies, 1)
    layout = scan_layout(rows).repeat(copies) if ablation.needs_layout else None
    with (
        fork_at(model, unit.layer, copies),
        ablate_heads(model, weights, ablation, means, key_mask, layout),
    ):
        return forward_nll(model, batch, copies)


def reference_batches(
    encoded: Sequence[EncodedExample], batch_size: int, pad_id: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """(tokens, real-token mask) batches over the scored examples: the reference set of ``mean``."""
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        yield collate(chunk, pad_id).tokens, real_token_mask(chunk)
