"""HeadToggler: state changes drive the readouts, and the widget buttons drive the state."""

from __future__ import annotations

import time

import pytest
import torch

from dps_lens.data import ExampleRef
from dps_lens.data.encoding import collate, encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.errors import DpsLensError
from dps_lens.interventions import ablate_heads
from dps_lens.organism.planted import designated_heads
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.loss import forward_nll
from dps_lens.steering import dps, generate
from dps_lens.widgets import HeadToggler


@pytest.fixture(scope="module")
def organism_scores(planted, examples):
    return score_heads(planted, examples, ScanConfig(), progress=False)


@pytest.fixture
def toggler(planted, examples, organism_scores) -> HeadToggler:
    stop = planted.tokenizer.convert_tokens_to_ids([".", "!"])
    return HeadToggler(planted, examples[0], organism_scores, max_new_tokens=8, extra_stop_ids=stop)


def test_clean_state_has_no_change(toggler: HeadToggler) -> None:
    r = toggler.readout
    assert r.heads == () and r.target_logprob_delta == 0.0
    assert r.continuation == r.clean_continuation
    assert all(c.clean == c.masked for c in r.top_changes)


def test_toggling_a_planted_head_matches_an_independent_ablation(
    toggler, planted, examples
) -> None:
    layer, head = designated_heads(planted)[0]
    readout = toggler.toggle(layer, head)
    assert readout.heads == ((layer, head),)
    batch = collate([encoder_for(planted, get_template("history")).encode(examples[0])], pad_id=0)
    clean = float(forward_nll(planted, batch).sum())
    with ablate_heads(planted, [(layer, head)]):
        masked = float(forward_nll(planted, batch).sum())
    assert readout.target_logprob_delta == pytest.approx(clean - masked, abs=1e-4)
    assert readout.target_logprob_delta < -0.1  # the planted head carries the preference
    assert max(abs(c.masked - c.clean) for c in readout.top_changes) > 0.01
    assert toggler.toggle(layer, head).heads == ()  # a second click unmasks
    assert toggler.readout.target_logprob_delta == 0.0


def test_gamma_switches_to_dps_generation(toggler, planted, examples) -> None:
    heads = designated_heads(planted)
    toggler.set_heads(heads)
    readout = toggler.set_gamma(2.0)
    expected = generate(
        planted, [examples[0]], dps(planted, list(heads), 2.0), max_new_tokens=8,
        extra_stop_ids=toggler.extra_stop_ids,
    ).texts[0]  # fmt: skip
    assert readout.continuation == expected and readout.gamma == 2.0
    assert "DPS, γ = 2" in toggler.render_readout()


def test_top_k_random_k_clear(toggler, organism_scores, planted) -> None:
    assert set(toggler.top_k(2).heads) == set(organism_scores.top_k(2))
    drawn = toggler.random_k(3).heads
    assert len(drawn) == 3 and all(0 <= l < 3 and 0 <= h < 4 for l, h in drawn)
    assert toggler.clear().heads == ()
    bare = HeadToggler(planted, toggler.example)
    with pytest.raises(DpsLensError, match="scores"):
        bare.top_k(2)
    with pytest.raises(DpsLensError, match="head"):
        toggler.toggle(5, 0)
    with pytest.raises(DpsLensError, match="gamma"):
        toggler.set_gamma(-1)


def test_widget_buttons_drive_the_state_and_the_view_follows(toggler, planted) -> None:
    panel = toggler.widget()
    layer, head = designated_heads(planted)[0]
    started = time.perf_counter()
    toggler.buttons[(layer, head)].click()
    elapsed = time.perf_counter() - started
    assert toggler.heads == {(layer, head)}
    assert toggler.buttons[(layer, head)].description == "×"
    readout_html = panel.children[-1].value
    assert f"L{layer}H{head}" in readout_html and "masked model" in readout_html
    controls = panel.children[1].children  # K, top-K, random-K, clear
    controls[3].click()
    assert toggler.heads == set() and toggler.buttons[(layer, head)].description == ""
    slider = panel.children[2]
    controls[1].click()
    slider.value = 1.0
    assert toggler.gamma == 1.0 and "DPS, γ = 1" in panel.children[-1].value
    strongest = toggler.scores.top_k(1)[0]
    assert toggler.buttons[strongest].style.button_color.startswith("rgb")
    print(f"toggle took {elapsed * 1000:.0f} ms")


def test_scores_of_another_model_are_rejected(planted, examples) -> None:
    from dps_lens.scoring.head_scores import HeadScores

    wrong = HeadScores(
        torch.zeros(1, 2, 2), torch.zeros(1), "m", "h", [ExampleRef(0, "u")], {"n_bootstrap": 10}
    )
    with pytest.raises(DpsLensError, match="scores are for a 2×2 model"):
        HeadToggler(planted, examples[0], wrong)
