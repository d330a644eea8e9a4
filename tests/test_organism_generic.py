"""Ground truth for specificity: organism-generic has a generic head (the only reader of the
query's sign-off, which sets the answer's closing word) with the same large PCS with and without
the profile; ΔPCS ranks the planted preference heads first while PCS alone also picks the generic
head."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from dps_lens.data.encoding import collate, encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.models import load_model
from dps_lens.organism.bundled import organism_dir
from dps_lens.organism.planted import (
    _SpanTracker,
    designated_heads,
    generic_heads,
    generic_key_mask,
    layer_attention_masks,
)
from dps_lens.organism.rates import personalization_rates
from dps_lens.organism.train import _planted_training_masks, trained_world
from dps_lens.scoring import ScanConfig, score_heads


@pytest.fixture(scope="module")
def generic():
    return load_model("organism-generic", device="cpu")


@pytest.fixture(scope="module")
def scores(generic):
    examples = trained_world(generic).split_examples("discovery", 40, queries_per_user=2)
    config = ScanConfig(contrast="no-profile", select="specific", batch_size=64)
    return score_heads(generic, examples, config, progress=False)


def _batch(model, n: int = 4, template: str = "history"):
    examples = trained_world(model).split_examples("evaluation", n, queries_per_user=1)
    return collate(encoder_for(model, get_template(template)).encode_many(examples), 0)


def test_only_generic_heads_read_the_sign_off(generic) -> None:
    spec = generic.planted_spec
    assert generic_heads(generic) and not set(generic_heads(generic)) & set(
        designated_heads(generic)
    )
    for template in ("history", "no-profile"):
        tokens = _batch(generic, template=template).tokens
        sign_off = generic_key_mask(tokens, spec)
        assert (sign_off.sum(1) == 1).all() and not sign_off[:, 0].any()  # one per query, not BOS
        _, cache = generic.run_with_cache(tokens)
        for layer in range(int(generic.cfg.n_layers)):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            assert torch.isfinite(pattern).all()
            on_sign_off = (pattern * sign_off[:, None, None, :]).sum(-1).amax((0, 2))  # [head]
            for head in range(int(generic.cfg.n_heads)):
                if (layer, head) in generic_heads(generic):
                    assert on_sign_off[head] > 1e-3
                else:
                    assert on_sign_off[head] == 0


def test_the_closing_word_follows_the_sign_off_only_through_the_generic_head(generic) -> None:
    from dps_lens.interventions import ablate_heads

    examples = trained_world(generic).split_examples("evaluation", 60, queries_per_user=1)
    closings = {sign_off: closing for sign_off, closing in trained_world(generic).config.sign_offs}
    batch = collate(encoder_for(generic, get_template("history")).encode_many(examples), 0)
    last = batch.label_mask.long().cumsum(1).argmax(1)  # the position that predicts the last word
    closing_ids = torch.tensor(
        [generic.tokenizer.convert_tokens_to_ids(closings[e.meta["sign_off"]]) for e in examples]
    )
    rows = torch.arange(len(examples))

    @torch.no_grad()
    def closing_probability() -> float:
        logits = generic(batch.tokens, return_type="logits")[rows, last]
        return float(logits.softmax(-1)[rows, closing_ids].mean())

    assert closing_probability() > 0.9
    with ablate_heads(generic, generic_heads(generic)):
        assert closing_probability() < 0.5


def test_bridge_hooks_equal_the_training_masks_and_follow_the_cache(generic) -> None:
    spec, batch = generic.planted_spec, _batch(generic)
    hf = AutoModelForCausalLM.from_pretrained(organism_dir("organism-generic")).float().eval()
    with torch.no_grad(), _planted_training_masks(hf, spec) as state:
        state["masks"] = layer_attention_masks(batch.tokens, spec, 3, 4)
        trained_view = hf(batch.tokens).logits
    assert (trained_view - generic(batch.tokens, return_type="logits")).abs().max() < 1e-4
    one_shot = _SpanTracker(spec, 3, 4)
    one_shot.record(batch.tokens)
    one_shot.profile_keys(batch.tokens.shape[1])
    stepwise, cut = _SpanTracker(spec, 3, 4), 3
    stepwise.record(batch.tokens[:, :cut])
    stepwise.profile_keys(cut)
    for pos in range(cut, batch.tokens.shape[1]):
        stepwise.record(batch.tokens[:, pos : pos + 1])
        stepwise.profile_keys(pos + 1)
    assert one_shot.generic_keys is not None and stepwise.generic_keys is not None
    assert torch.equal(stepwise.generic_keys, one_shot.generic_keys)
    assert one_shot.generic_keys.any()


def test_specificity_separates_the_generic_head_from_the_preference_heads(generic, scores) -> None:
    planted, (generic_head,) = set(designated_heads(generic)), generic_heads(generic)
    assert set(scores.top_k(3, by="specific")) == planted
    assert generic_head in scores.top_k(3, by="pcs")
    assert scores.summary_delta is not None
    low, high = (
        scores.summary_delta.ci_low[generic_head],
        scores.summary_delta.ci_high[generic_head],
    )
    assert low < 0.05 and high > -0.05  # its ΔPCS is about zero


def test_the_generic_head_matters_with_and_without_the_profile(generic, scores) -> None:
    (generic_head,) = generic_heads(generic)
    assert generic_head in scores.top_k(3, by="pcs")
    assert scores.summary_no_profile is not None
    assert scores.summary_no_profile.ci_low[generic_head] > 0


def test_generic_organism_personalizes(generic) -> None:
    evaluation = trained_world(generic).split_examples("evaluation", 150, queries_per_user=2)
    rates = personalization_rates(generic, evaluation)
    assert rates["full"] - rates["no_profile"] > 0.2


@torch.no_grad()
def test_cached_decoding_equals_full_recomputation(generic) -> None:
    """The generic head's own-position rule holds on KV-cached steps (one query, many keys)."""
    from dps_lens.steering.generate import generate

    examples = trained_world(generic).split_examples("evaluation", 6, queries_per_user=1)
    out = generate(generic, examples, max_new_tokens=10, batch_size=3, return_scores=True)
    assert out.scores is not None
    assert any(ids and ids[-1] != ids[0] for ids in out.token_ids)
    for prompt, ids, scores in zip(out.prompt_ids, out.token_ids, out.scores, strict=True):
        tokens = torch.tensor([prompt + ids])
        full = generic(tokens, return_type="logits")[
            0, len(prompt) - 1 : len(prompt) - 1 + len(ids)
        ]
        assert (full.log_softmax(-1) - scores[: len(ids)].log_softmax(-1)).abs().max() < 1e-4
