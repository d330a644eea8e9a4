"""The built-in scan methods: exact ablation, attribution patching and activation patching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from dps_lens.data.encoding import collate, real_token_mask
from dps_lens.heads import Head
from dps_lens.scoring.attribution import attribution_batch
from dps_lens.scoring.loss import forward_nll
from dps_lens.scoring.patching import patched_losses, source_activations
from dps_lens.scoring.scan import ScanState, Work, register_scan_method
from dps_lens.scoring.units import Unit, forward_unit, plan_units


def exact_cells_work(state: ScanState, heads: Sequence[Head], rows: Sequence[int]) -> list[Work]:
    """Exact ablation of ``heads`` on the encoded ``rows`` (in the given order), a layer's heads
    forked from one run of the blocks below it. Rows with the profile and rows without it (the
    no-profile contrast) never share a forward pass, so a scan that reuses another's
    with-profile cells skips whole passes."""
    model, encoded, config, pad_id, checkpoint = (
        state.model, state.encoded, state.config, state.pad_id, state.checkpoint
    )  # fmt: skip

    ablation = config.ablation()

    def unit_work(unit: Unit) -> Work:
        def compute() -> Tensor:
            losses = forward_unit(model, encoded, unit, pad_id, ablation, state.means)
            clean = checkpoint.clean_loss[list(unit.examples)].repeat(len(unit.heads))
            return ablation.score_sign * (losses - clean)

        return Work(unit.cells(), compute)

    n = state.n_examples
    groups = ([r for r in rows if r < n], [r for r in rows if r >= n])
    return [unit_work(u) for g in groups if g for u in plan_units(heads, g, config.batch_size)]


@register_scan_method("exact")
def exact_work(state: ScanState) -> list[Work]:
    """PCS by ablation, the definition: every head on every example."""
    return exact_cells_work(state, state.heads, state.order)


@register_scan_method("attribution")
def attribution_work(state: ScanState) -> list[Work]:
    """First-order estimates of every head from one backward pass per batch of examples."""
    model, encoded, heads, config, pad_id = (
        state.model, state.encoded, state.heads, state.config, state.pad_id
    )  # fmt: skip

    def batch_work(index: list[int]) -> Work:
        def compute() -> Tensor:
            chunk = [encoded[i] for i in index]
            batch, real = collate(chunk, pad_id), real_token_mask(chunk)
            scores = attribution_batch(
                model, batch, real, config.ablation(), state.means, config.ig_steps,
                config.graddrop,
            )  # fmt: skip
            return torch.stack([scores[:, l, h] for l, h in heads]).flatten()

        return Work([(i, head) for head in heads for i in index], compute)

    size, order = config.batch_size, state.order
    return [batch_work(order[s : s + size]) for s in range(0, len(order), size)]


@register_scan_method("activation-patching")
def patching_work(state: ScanState) -> list[Work]:
    """Each head patched between the profile and the no-profile run (noising or denoising)."""
    model, examples, encoder, encoded, order, config, pad_id = (
        state.model, state.examples, state.encoder, state.encoded, state.order, state.config,
        state.pad_id,
    )  # fmt: skip
    bare = replace(encoder, template=encoder.template.without_profile())
    no_profile = bare.encode_many(examples)
    noising = config.direction == "noising"
    base, source = (encoded, no_profile) if noising else (no_profile, encoded)
    batches = [order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    base_loss = state.checkpoint.clean_loss.clone()
    if not noising:
        for index in batches:
            base_loss[index] = forward_nll(model, collate([no_profile[i] for i in index], pad_id))
    sources: dict[int, Tensor] = {}  # every layer's source activations, one run per example

    def sources_of(picked: list[int]) -> list[Tensor]:
        missing = [i for i in picked if i not in sources]
        if missing:
            found = source_activations(model, [source[i] for i in missing], pad_id)
            sources.update(zip(missing, found, strict=True))
        return [sources[i] for i in picked]

    def unit_work(unit: Unit) -> Work:
        def compute() -> Tensor:
            picked = list(unit.examples)
            losses = patched_losses(
                model, [base[i] for i in picked], sources_of(picked), unit.layer, unit.heads,
                pad_id,
            )  # fmt: skip
            clean = base_loss[picked].repeat(len(unit.heads))
            return losses - clean if noising else clean - losses

        return Work(unit.cells(), compute)

    return [unit_work(u) for u in plan_units(state.heads, order, config.batch_size)]
