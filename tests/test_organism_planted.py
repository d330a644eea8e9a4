"""The planted constraint on a random-weight organism: exact, permanent, and cache-aware."""

import dataclasses

import pytest
import torch

from dps_lens._io import atomic_write_json
from dps_lens.data.encoding import collate, encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.interventions import ablate_heads
from dps_lens.models import load_model
from dps_lens.organism.planted import (
    _SpanTracker,
    designated_heads,
    layer_attention_masks,
    planted_spec_from_card,
    profile_key_mask,
)
from dps_lens.organism.train import ORGANISMS, _planted_training_masks, word_level_tokenizer
from dps_lens.organism.world import TOPICS, World, WorldConfig
from dps_lens.tiny import hf_model

CONFIG = ORGANISMS["organism-planted"]
CARD = {
    "name": "random-planted",
    "planted": {
        "heads": [list(h) for h in CONFIG.planted_heads],
        "open_token": "History",
        "close_token": "Question",
    },
}


@pytest.fixture(scope="module")
def random_planted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("random-planted")
    tokenizer = word_level_tokenizer(World().vocabulary())
    torch.manual_seed(0)
    hf = hf_model(CONFIG.architecture, len(tokenizer)).eval()
    hf.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    atomic_write_json(directory / "model_card.json", CARD)
    return hf, load_model(str(directory), device="cpu")


def _batch(model, examples):
    return collate(encoder_for(model, get_template("history")).encode_many(examples), 0)


def test_constraint_is_installed_from_the_card_and_survives_reset(random_planted):
    _, model = random_planted
    assert list(designated_heads(model)) == list(CONFIG.planted_heads)
    tokens = _batch(model, World().split_examples("evaluation", 2, queries_per_user=1)).tokens
    before = model(tokens, return_type="logits")
    model.reset_hooks()
    assert torch.equal(model(tokens, return_type="logits"), before)


def test_bridge_hooks_equal_the_training_masks(random_planted):
    hf, model = random_planted
    spec = model.planted_spec
    batch = _batch(model, World().split_examples("evaluation", 4, queries_per_user=1))
    with torch.no_grad(), _planted_training_masks(hf, spec) as state:
        state["masks"] = layer_attention_masks(batch.tokens, spec, 3, 4)
        trained_view = hf(batch.tokens).logits
        state["masks"] = [torch.ones_like(m).tril() for m in state["masks"]]
        unconstrained = hf(batch.tokens).logits
    bridge_view = model(batch.tokens, return_type="logits")
    assert (trained_view - bridge_view).abs().max() < 1e-5
    assert (unconstrained - bridge_view).abs().max() > 1e-2  # the constraint matters


def test_other_heads_never_attend_to_the_profile(random_planted):
    _, model = random_planted
    batch = _batch(model, World().split_examples("evaluation", 3, queries_per_user=1))
    keys, _, _ = profile_key_mask(batch.tokens, model.planted_spec)
    assert keys.any()
    _, cache = model.run_with_cache(batch.tokens)
    allowed = model.planted_spec.allowed(3, 4)
    for layer in range(3):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        on_profile = (pattern * keys[:, None, None, :]).sum(-1)  # [batch, head, query]
        for head in range(4):
            if allowed[layer, head]:
                assert on_profile[:, head].max() > 1e-3
            else:
                assert on_profile[:, head].max() == 0


def test_profile_reaches_the_output_only_through_designated_heads(random_planted):
    _, model = random_planted
    world = World()
    user = world.user(5)
    example = world.examples(user, 1, gold="preferred")[0]
    swap = {
        item: next(i for i in topic.items if i != item)
        for topic in TOPICS
        for item in [user.favourites[topic.name]]
    }
    other = dataclasses.replace(
        example,
        profile=[" ".join(swap.get(w, w) for w in line.split()) for line in example.profile],
    )
    batch = _batch(model, [example, other])
    assert not torch.equal(batch.tokens[0], batch.tokens[1])
    assert batch.target_mask[0].equal(batch.target_mask[1])  # same length, same answer positions
    answer_start = int(batch.target_mask[0].nonzero()[0, 0]) - 1
    with ablate_heads(model, list(CONFIG.planted_heads), mode="zero"):
        masked = model(batch.tokens, return_type="logits")
    assert torch.allclose(masked[0, answer_start:], masked[1, answer_start:], atol=1e-5)
    full = model(batch.tokens, return_type="logits")
    assert (full[0, answer_start:] - full[1, answer_start:]).abs().max() > 1e-4


def test_span_tracker_follows_cached_continuations(random_planted):
    _, model = random_planted
    spec = model.planted_spec
    tokens = _batch(model, World().split_examples("evaluation", 2, queries_per_user=1)).tokens
    one_shot = _SpanTracker(spec, 3, 4)
    one_shot.record(tokens)
    expected = one_shot.profile_keys(tokens.shape[1]).clone()
    stepwise = _SpanTracker(spec, 3, 4)
    cut = 5
    stepwise.record(tokens[:, :cut])
    stepwise.profile_keys(cut)
    for pos in range(cut, tokens.shape[1]):
        stepwise.record(tokens[:, pos : pos + 1])
        got = stepwise.profile_keys(pos + 1)
    assert torch.equal(got, expected)


def test_card_without_planted_entry_means_no_constraint():
    assert planted_spec_from_card({"name": "x"}, None) is None


GROUPS = ORGANISMS["organism-groups"]


@pytest.fixture(scope="module")
def random_grouped(tmp_path_factory):
    directory = tmp_path_factory.mktemp("random-grouped")
    tokenizer = word_level_tokenizer(World(GROUPS.world).vocabulary())
    torch.manual_seed(0)
    hf = hf_model(GROUPS.architecture, len(tokenizer)).eval()
    hf.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    card = {"name": "random-grouped", "planted": {**CARD["planted"], "heads": [list(h) for h in GROUPS.planted_heads],
            "group_heads": [list(h) for h in GROUPS.group_heads], "group_marker": "lol"}}  # fmt: skip
    atomic_write_json(directory / "model_card.json", card)
    return hf, load_model(str(directory), device="cpu")


def test_grouped_constraint_picks_each_sequences_heads(random_grouped):
    hf, model = random_grouped
    spec = model.planted_spec
    examples = World(WorldConfig(grouped=True)).split_examples("evaluation", 8, queries_per_user=1)
    assert {e.meta["group"] for e in examples} == {0, 1}
    batch = _batch(model, examples)
    groups = spec.groups(batch.tokens)
    assert groups.tolist() == [e.meta["group"] == 1 for e in examples]
    with torch.no_grad(), _planted_training_masks(hf, spec) as state:
        state["masks"] = layer_attention_masks(batch.tokens, spec, 3, 4)
        trained_view = hf(batch.tokens).logits
    bridge_view = model(batch.tokens, return_type="logits")
    assert (trained_view - bridge_view).abs().max() < 1e-5
    keys, _, _ = profile_key_mask(batch.tokens, spec)
    _, cache = model.run_with_cache(batch.tokens)
    for row, in_group in enumerate(groups.tolist()):
        readers = set(GROUPS.group_heads if in_group else GROUPS.planted_heads)
        for layer in range(3):
            mass = cache[f"blocks.{layer}.attn.hook_pattern"][row][..., keys[row]].sum(-1).amax(-1)
            for head in range(4):
                if (layer, head) not in readers:
                    assert float(mass[head]) < 1e-6
    assert set(designated_heads(model)) == set(GROUPS.planted_heads) | set(GROUPS.group_heads)
