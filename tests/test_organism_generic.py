"""Ground truth for specificity: organism-generic has a generic head (the only reader of the
question) with a large PCS with and without the profile; ΔPCS ranks the planted preference heads
first while PCS alone also picks the generic head."""

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
    layer_attention_masks,
    query_key_mask,
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


def test_only_generic_heads_read_the_question_and_bos_stays_readable(generic) -> None:
    spec = generic.planted_spec
    assert generic_heads(generic) and not set(generic_heads(generic)) & set(
        designated_heads(generic)
    )
    for template in ("history", "no-profile"):
        tokens = _batch(generic, template=template).tokens
        query = query_key_mask(tokens, spec)
        assert query.any() and not query[:, 0].any()
        _, cache = generic.run_with_cache(tokens)
        for layer in range(int(generic.cfg.n_layers)):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            assert torch.isfinite(pattern).all()
            on_query = (pattern * query[:, None, None, :]).sum(-1).amax((0, 2))  # [head]
            for head in range(int(generic.cfg.n_heads)):
                if (layer, head) in generic_heads(generic):
                    assert on_query[head] > 1e-3
                else:
                    assert on_query[head] == 0


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
    assert one_shot.query is not None and stepwise.query is not None
    assert torch.equal(stepwise.query, one_shot.query)


@pytest.mark.xfail(
    strict=True,
    reason="the generic head's topic also selects the profile item the planted heads read, "
    "so its PCS is larger with the profile than without it",
)
def test_specificity_separates_the_generic_head_from_the_preference_heads(generic, scores) -> None:
    planted, (generic_head,) = set(designated_heads(generic)), generic_heads(generic)
    assert set(scores.top_k(3, by="specific")) == planted
    assert generic_head in scores.top_k(3, by="pcs")


def test_the_generic_head_matters_with_and_without_the_profile(generic, scores) -> None:
    (generic_head,) = generic_heads(generic)
    assert generic_head in scores.top_k(3, by="pcs")
    assert scores.summary_no_profile is not None
    assert scores.summary_no_profile.ci_low[generic_head] > 0


def test_generic_organism_personalizes(generic) -> None:
    evaluation = trained_world(generic).split_examples("evaluation", 150, queries_per_user=2)
    rates = personalization_rates(generic, evaluation)
    assert rates["full"] - rates["no_profile"] > 0.2
