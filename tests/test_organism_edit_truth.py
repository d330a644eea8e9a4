"""Ground truth on organism-planted for the head-editing methods: emphasising or amplifying the
planted heads raises the personalization rate on held-out users, the same edits of random heads do
not, and the head shift along the mean profile direction (the same for every user) cannot say
which item a user prefers: it lowers the rate at every strength. ``no_profile`` decodes at the
no-profile rate the demo prints."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dps_lens.evaluation.metrics import personalized
from dps_lens.evaluation.paired import paired_difference
from dps_lens.heads import draw_random_heads
from dps_lens.interventions import head_directions, model_shape
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.rates import personalization_rates
from dps_lens.organism.train import trained_world
from dps_lens.steering import (
    Steering,
    amplify,
    attention_emphasis,
    generate,
    head_shift,
    no_profile,
)

pytestmark = pytest.mark.slow

GRIDS = {"attention_emphasis": (0.1, 0.01, 0.001), "amplify": (0.5, 1.0, 2.0)}
SHIFTS = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def held_out(planted):
    return trained_world(planted).split_examples("evaluation", 100, queries_per_user=2)


@pytest.fixture(scope="module")
def personalized_rows(planted, held_out) -> Callable[[Steering | None], list[dict[str, float]]]:
    stop = planted.tokenizer.convert_tokens_to_ids([".", "!"])

    def rows(steering: Steering | None) -> list[dict[str, float]]:
        out = generate(planted, held_out, steering, max_new_tokens=3, extra_stop_ids=stop)
        return [
            {"personalized": float(personalized(t, e))}
            for t, e in zip(out.texts, held_out, strict=True)
        ]

    return rows


def _gain(rows, reference):
    return paired_difference(rows, [reference], "personalized", n_bootstrap=500, seed=0)


def _build(model, method: str, heads, alpha: float) -> Steering:
    return (attention_emphasis if method == "attention_emphasis" else amplify)(model, heads, alpha)


@pytest.mark.parametrize("method", sorted(GRIDS))
def test_editing_the_planted_heads_personalizes_and_random_heads_do_not(
    planted, personalized_rows, method
):
    plain = personalized_rows(None)
    heads = list(designated_heads(planted))
    gains = {
        a: _gain(personalized_rows(_build(planted, method, heads, a)), plain) for a in GRIDS[method]
    }
    best = max(gains, key=lambda a: gains[a].value)
    assert gains[best].low > 0, f"{method} never beats plain: {gains}"
    for seed in SEEDS:
        drawn = draw_random_heads(heads, *model_shape(planted), seed=seed)
        control = _gain(personalized_rows(_build(planted, method, drawn, best)), plain)
        assert control.low <= 0 and control.value < gains[best].value, (seed, control)


def test_the_mean_direction_shift_lowers_personalization_at_every_strength(
    planted, personalized_rows
):
    plain = personalized_rows(None)
    heads = list(designated_heads(planted))
    world = trained_world(planted)
    directions = head_directions(planted, world.split_examples("discovery", 40, queries_per_user=2))
    gains = {
        a: _gain(personalized_rows(head_shift(planted, heads, directions, a)), plain)
        for a in SHIFTS
    }
    assert all(g.low <= 0 for g in gains.values()), gains
    assert gains[2.0].high < 0 and gains[-2.0].high < 0
    drawn = draw_random_heads(heads, *model_shape(planted), seed=0)
    control = _gain(personalized_rows(head_shift(planted, drawn, directions, 2.0)), plain)
    assert control.value > gains[2.0].value  # random heads barely move the rate


def test_no_profile_decodes_at_the_demos_no_profile_rate(planted, held_out, personalized_rows):
    rows = personalized_rows(no_profile())
    rate = sum(r["personalized"] for r in rows) / len(rows)
    assert rate == pytest.approx(personalization_rates(planted, held_out)["no_profile"], abs=1e-9)
