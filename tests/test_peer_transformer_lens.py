"""TransformerLens' own patching functions as the peer of our discovery methods, on the same bridge.

- Ablation: ``generic_activation_patch`` (activation ``z``, ``layer_head_vector_patch_setter``,
  axes layer × head, ``reduce="none"``, metric = per-example target NLL) with a "clean cache"
  of zeros (zero ablation) or of the head means broadcast over every position (mean ablation)
  gives, minus the clean NLL, our exact scan's per-example PCS.
- Activation patching: our patching copies a head's ``hook_z`` only at the label positions, which
  sit at different indices in the profile and the no-profile prompt (the prompts differ in
  length; both end in the same target). TransformerLens' setter copies every position of the
  head from a cache of the corrupted batch's shape, so it cannot align the two prompts by
  itself. What it can express is the same patch with an aligned cache: the base prompt's own
  ``hook_z`` with the source's label-position values written at the base's label positions
  (the base's own values at the other positions leave them unchanged). That is compared.
- Attribution: ``attribution_patch`` scores ``(a_clean − a_corrupt)·g`` between two token runs
  of the same length, one pair at a time. A zero or mean target is an activation, not a token
  run, and the profile / no-profile pair differs in length (its length check rejects it), so
  its entry point cannot compute our estimate. Its gradient cache
  (``cache_activation_and_gradient``) can: the gradient of the summed target NLL at ``hook_z``
  times ``z̃ − z``, summed over real positions, equals our ``attribution`` scores. With a
  ``names_filter`` of only ``attn.hook_z`` its gradients come back ``None`` on a bridge (the
  hooked tensors are views the forward never consumes, so nothing upstream drives the backward
  through them); its default node set (with ``hook_embed``) is used.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from transformer_lens.patching import generic_activation_patch, layer_head_vector_patch_setter
from transformer_lens.tools.analysis.attribution_patching import cache_activation_and_gradient

from dps_lens.data import TargetBatch, collate, encoder_for, get_template
from dps_lens.data.encoding import EncodedExample, pad_id_of, real_token_mask
from dps_lens.interventions import head_means
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.loss import label_positions, target_nll
from dps_lens.scoring.patching import label_index

ATOL = 1e-4


@pytest.fixture(scope="module")
def peer_examples():
    return World().split_examples("discovery", 4, queries_per_user=1)


def _encode(model, examples, template: str = "history") -> tuple[list[EncodedExample], TargetBatch]:
    encoded = encoder_for(model, get_template(template)).encode_many(examples)
    return encoded, collate(encoded, pad_id_of(model.tokenizer))


def _metric(batch: TargetBatch):
    """Per-example target NLL, read at the label positions of the full logits."""
    positions = label_positions(batch)
    return lambda logits: target_nll(logits[:, positions], batch, positions)


def _z_names(model) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(int(model.cfg.n_layers))]


@torch.no_grad()
def _tl_patch(model, batch: TargetBatch, cache: dict[str, Tensor]) -> Tensor:
    """``generic_activation_patch`` over every (layer, head): per-example NLL ``[batch, L, H]``."""
    result = generic_activation_patch(
        model,
        batch.tokens,
        cache,
        _metric(batch),
        layer_head_vector_patch_setter,
        "z",
        index_axis_names=("layer", "head"),
        reduce="none",
    )
    return result.values.permute(2, 0, 1)


@torch.no_grad()
def _clean_nll(model, batch: TargetBatch) -> Tensor:
    return _metric(batch)(model(batch.tokens))


def _ablation_cache(model, batch: TargetBatch, means: Tensor | None) -> dict[str, Tensor]:
    """The "clean cache" of an ablation: zeros, or each head's mean at every position."""
    n_rows, n_pos = batch.tokens.shape
    shape = (n_rows, n_pos, int(model.cfg.n_heads), int(model.cfg.d_head))
    return {
        name: torch.zeros(shape) if means is None else means[layer].expand(shape).clone()
        for layer, name in enumerate(_z_names(model))
    }


def _scan_means(model, encoded: list[EncodedExample], batch: TargetBatch) -> Tensor:
    """The scan's reference of ``mean``: head means over the scored sequences' real tokens."""
    return head_means(model, [(batch.tokens, real_token_mask(encoded))])


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_generic_activation_patch_equals_the_exact_scan(tiny_model, peer_examples, mode):
    encoded, batch = _encode(tiny_model, peer_examples)
    means = _scan_means(tiny_model, encoded, batch) if mode == "mean" else None
    theirs = _tl_patch(tiny_model, batch, _ablation_cache(tiny_model, batch, means))
    theirs = theirs - _clean_nll(tiny_model, batch)[:, None, None]
    ours = score_heads(tiny_model, peer_examples, ScanConfig(mode=mode), progress=False)
    assert ours.per_example.shape == theirs.shape
    assert float((theirs - ours.per_example).abs().max()) < ATOL


@torch.no_grad()
def _z_cache(model, batch: TargetBatch) -> dict[str, Tensor]:
    _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in _z_names(model))
    return {name: cache[name].clone() for name in _z_names(model)}


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_generic_activation_patch_with_an_aligned_cache_equals_our_patching(
    tiny_model, peer_examples, direction
):
    profile, profile_batch = _encode(tiny_model, peer_examples)
    bare, bare_batch = _encode(tiny_model, peer_examples, "no-profile")
    assert any(len(a.input_ids) != len(b.input_ids) for a, b in zip(profile, bare, strict=True))
    noising = direction == "noising"
    (base, base_batch), (source, source_batch) = (
        ((profile, profile_batch), (bare, bare_batch))
        if noising
        else ((bare, bare_batch), (profile, profile_batch))
    )
    aligned = _z_cache(tiny_model, base_batch)
    source_z = _z_cache(tiny_model, source_batch)
    for name in aligned:
        for row, (b, s) in enumerate(zip(base, source, strict=True)):
            aligned[name][row, label_index(b)] = source_z[name][row, label_index(s)]
    patched = _tl_patch(tiny_model, base_batch, aligned)
    clean = _clean_nll(tiny_model, base_batch)[:, None, None]
    theirs = patched - clean if noising else clean - patched
    config = ScanConfig(method="activation-patching", direction=direction)
    ours = score_heads(tiny_model, peer_examples, config, progress=False).per_example
    assert float((theirs - ours).abs().max()) < ATOL


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_transformer_lens_gradient_cache_gives_our_attribution(tiny_model, peer_examples, mode):
    encoded, batch = _encode(tiny_model, peer_examples)
    means = _scan_means(tiny_model, encoded, batch) if mode == "mean" else None
    gradients = cache_activation_and_gradient(
        tiny_model, batch.tokens, lambda logits: _metric(batch)(logits).sum()
    )
    real = real_token_mask(encoded)[:, :, None, None].float()
    theirs = torch.stack(
        [
            (
                ((0.0 if means is None else means[layer]) - gradients.activations[name])
                * gradients.gradients[name]
                * real
            ).sum(dim=(1, 3))
            for layer, name in enumerate(_z_names(tiny_model))
        ],
        dim=1,
    )
    config = ScanConfig(method="attribution", mode=mode)
    ours = score_heads(tiny_model, peer_examples, config, progress=False).per_example
    assert float((theirs - ours).abs().max()) < ATOL


def test_transformer_lens_attribution_patch_needs_equal_length_pairs(tiny_llama, peer_examples):
    """Why ``attribution_patch`` itself is not compared: profile and no-profile prompts differ
    in length, and its pairs must align position by position."""
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    _, profile = _encode(tiny_llama, peer_examples[:1])
    _, bare = _encode(tiny_llama, peer_examples[:1], "no-profile")
    with pytest.raises(ValueError, match="same length"):
        attribution_patch(tiny_llama, profile.tokens, bare.tokens, lambda lg: lg[0, -1, 0])
