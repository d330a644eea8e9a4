import re
from collections import Counter

import pytest

from dps_lens.errors import DpsLensError
from dps_lens.organism.train import word_level_tokenizer
from dps_lens.organism.world import (
    SIGN_OFFS,
    TOPICS,
    World,
    WorldConfig,
    personalized,
    render_answer,
)


def test_users_are_deterministic_and_seed_dependent():
    assert World().user(7) == World().user(7)
    assert World(WorldConfig(seed=1)).user(7) != World().user(7)
    assert World().examples(World().user(3)) == World().examples(World().user(3))


def test_profiles_state_the_mentioned_favourites():
    world = World()
    for index in range(200):
        user = world.user(index)
        assert 3 <= len(user.profile) <= 8
        text = " ".join(user.profile)
        for topic, count in user.mentions.items():
            favourite = user.favourites[topic]
            assert len(re.findall(rf"\b{favourite}\b", text)) >= count


def test_splits_have_disjoint_users():
    world = World()
    ids = {
        name: {e.user_id for e in world.split_examples(name, 30)}
        for name in ("train", "discovery", "evaluation")
    }
    assert not ids["train"] & ids["discovery"] and not ids["discovery"] & ids["evaluation"]
    with pytest.raises(DpsLensError, match="unknown split"):
        world.split("test")


def test_sampled_answers_follow_preferences_at_the_configured_rate():
    config = WorldConfig(p=0.6)
    world = World(config)
    examples = [e for i in range(3000) for e in world.examples(world.user(i), 1, gold="sampled")]
    by_mentions: dict[int, list[bool]] = {}
    for e in examples:
        if e.meta["preferred"] != e.meta["popular"]:
            by_mentions.setdefault(min(e.meta["mentions"], 3), []).append(personalized(e.target, e))
    for mentions, follows in by_mentions.items():
        assert abs(sum(follows) / len(follows) - config.follow_probability(mentions)) < 0.05, (
            mentions
        )
    assert config.follow_probability(0) == 0.0


def test_preferred_gold_always_follows_the_user():
    world = World()
    examples = world.split_examples("evaluation", 50)
    assert all(personalized(e.target, e) for e in examples)
    styles = Counter(tuple(e.meta["style"]) for e in examples)
    assert len(styles) > 3  # styles vary across users


def test_tokenizer_covers_the_world_and_keeps_items_whole():
    world = World()
    tokenizer = word_level_tokenizer(world.vocabulary())
    unk = tokenizer.unk_token_id
    for index in range(100):
        for e in world.examples(world.user(index), gold="sampled"):
            ids = tokenizer(" ".join([*e.profile, e.input, e.target]), add_special_tokens=False)[
                "input_ids"
            ]
            assert unk not in ids
    for topic in TOPICS:
        for item in topic.items:
            assert len(tokenizer(item, add_special_tokens=False)["input_ids"]) == 1


def test_render_answer_styles():
    assert render_answer("cat", ("terse", "formal", "calm")) == "cat ."
    assert render_answer("cat", ("elaborate", "casual", "excited")).endswith("gonna be awesome !")


def test_bad_world_config():
    with pytest.raises(DpsLensError, match="within"):
        WorldConfig(p=1.5)


def test_sign_offs_set_the_closing_word_and_leave_the_rest_of_the_world_alone():
    plain, signed = World(), World(WorldConfig(sign_offs=SIGN_OFFS))
    closing = dict(SIGN_OFFS)
    tokenizer = word_level_tokenizer(signed.vocabulary())
    seen = Counter()
    for index in range(50):
        first = plain.examples(plain.user(index))[0]
        examples = signed.examples(signed.user(index))
        for example in examples:
            sign_off = example.meta["sign_off"]
            seen[sign_off] += 1
            assert example.input.endswith(f" {sign_off}")
            assert example.target.endswith(f" {closing[sign_off]}")
            ids = tokenizer(f"{example.input} {example.target}", add_special_tokens=False)
            assert tokenizer.unk_token_id not in ids["input_ids"]
        # the sign-off is drawn last: the first query is the plain world's, plus the pair
        sign_off = examples[0].meta["sign_off"]
        assert examples[0].input == f"{first.input} {sign_off}"
        assert examples[0].target == f"{first.target} {closing[sign_off]}"
        assert examples[0].profile == first.profile and "sign_off" not in first.meta
    assert set(seen) == set(closing)  # every sign-off is drawn


@pytest.mark.parametrize(
    ("sign_offs", "match"),
    [
        ((("please", "please"),), "distinct"),
        ((("please", "thanks"), ("kindly", "thanks")), "distinct"),
        ((("please", "pizza"),), "occur in the world"),
    ],
)
def test_bad_sign_offs(sign_offs, match):
    with pytest.raises(DpsLensError, match=match):
        WorldConfig(sign_offs=sign_offs)
