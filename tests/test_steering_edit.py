"""Head-editing steering methods (attention emphasis, head shift, amplification), the no-profile
baseline, teacher forcing, and their one-line refusals."""

from __future__ import annotations

import pytest
import torch

from dps_lens.errors import DpsLensError
from dps_lens.evaluation.runner import describe
from dps_lens.interventions import DIRECTIONS_FILE, head_directions
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.train import trained_world
from dps_lens.steering import (
    SteeringContext,
    amplify,
    attention_emphasis,
    generate,
    head_shift,
    method_config,
    no_profile,
    plain,
)


@pytest.fixture(scope="module")
def users(planted):
    return trained_world(planted).split_examples("evaluation", 8, queries_per_user=1)


@pytest.fixture(scope="module")
def directions(planted):
    return head_directions(planted, trained_world(planted).split_examples("discovery", 8))


def _decode(model, inputs, steering=None, **kw):
    return generate(model, inputs, steering, max_new_tokens=4, stop_at_eos=False, **kw)


def test_each_edit_at_its_neutral_strength_gives_plains_tokens_exactly(planted, users, directions):
    heads = list(designated_heads(planted))
    reference = _decode(planted, users).token_ids
    for steering in (
        attention_emphasis(planted, heads, alpha=1.0),
        head_shift(planted, heads, directions, alpha=0.0),
        amplify(planted, heads, alpha=0.0),
    ):
        assert _decode(planted, users, steering).token_ids == reference, steering.name
    moved = _decode(planted, users, amplify(planted, heads, alpha=3.0)).token_ids
    assert moved != reference  # a real strength changes the output


def test_no_profile_decodes_the_prompt_without_its_profile(planted, users):
    bare = [u.without_profile() for u in users]
    out = _decode(planted, users, no_profile())
    assert out.token_ids == _decode(planted, bare).token_ids
    assert out.prompt_ids == _decode(planted, bare).prompt_ids
    with pytest.raises(DpsLensError, match="PreferenceExamples"):
        _decode(planted, ["History 1: a dog\nQuestion: suggest a pet"], no_profile())


def test_teacher_forcing_on_a_methods_own_output_reproduces_its_scores(planted, users):
    heads = list(designated_heads(planted))
    steering = method_config("dps", gamma=1.0).build(SteeringContext(planted, heads=heads))
    for chosen in (plain(), steering):
        free = generate(planted, users, chosen, max_new_tokens=6, return_scores=True)
        forced = generate(planted, users, chosen, max_new_tokens=6, return_scores=True, forced=free)
        assert forced.token_ids == free.token_ids and forced.stopped == free.stopped
        assert free.scores is not None and forced.scores is not None
        for a, b in zip(free.scores, forced.scores, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_teacher_forcing_feeds_the_given_tokens(planted, users):
    free = generate(planted, users, plain(), max_new_tokens=5, return_scores=True)
    forced = generate(
        planted, users, amplify(planted, list(designated_heads(planted)), 3.0),
        max_new_tokens=5, return_scores=True, forced=free,
    )  # fmt: skip
    assert forced.token_ids == free.token_ids
    assert forced.scores is not None and free.scores is not None
    assert [len(s) for s in forced.scores] == [len(s) for s in free.scores]
    with pytest.raises(DpsLensError, match="forced generation has"):
        generate(planted, users[:2], plain(), forced=free)


def test_profile_reading_methods_refuse_inputs_without_a_profile(planted, users, directions):
    heads = list(designated_heads(planted))
    for steering in (
        attention_emphasis(planted, heads),
        head_shift(planted, heads, directions),
    ):
        with pytest.raises(DpsLensError, match="PreferenceExamples"):
            _decode(planted, ["Question: suggest a pet"], steering)
        with pytest.raises(DpsLensError, match="no prompt has one"):
            _decode(planted, [u.without_profile() for u in users], steering)
    amplify_out = _decode(planted, ["Question: suggest a pet"], amplify(planted, heads))
    assert amplify_out.texts  # amplification reads no profile: any prompt will do


def test_head_shift_reads_the_directions_beside_the_head_set(planted, directions, tmp_path):
    heads = list(designated_heads(planted))
    config = method_config("head_shift", alpha=2.0)
    with pytest.raises(DpsLensError, match="dps-lens directions"):
        config.build(SteeringContext(planted, heads=heads, source=tmp_path))
    directions.save(tmp_path)
    built = config.build(SteeringContext(planted, heads=heads, source=tmp_path / "top_k.json"))
    assert built.ablation.identity() == {
        "name": "shift",
        "alpha": 2.0,
        "directions": directions.digest(),
    }
    assert describe(built)["mode"]["directions"] == directions.digest()
    assert (tmp_path / DIRECTIONS_FILE).exists()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("attention_emphasis", {"alpha": 0.0}, "alpha must be > 0"),
        ("attention_emphasis", {"alpha": 2.0}, "alpha must be <= 1"),
        ("amplify", {"alpha": -1.0}, "alpha must be >= 0"),
        ("head_shift", {"alpha": float("nan")}, "finite"),
        ("amplify", {"alpha": float("inf")}, "finite"),
    ],
)
def test_method_strengths_out_of_range_are_refused(name, params, message):
    with pytest.raises(DpsLensError, match=message):
        method_config(name, **params)
