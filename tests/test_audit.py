"""The audit: step divergence under teacher forcing, profile lift, the heads' profile attention
share, and the report written from them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dps_lens.data import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.evaluation import EvalConfig
from dps_lens.evaluation.audit import audit_markdown, audit_methods, step_divergence
from dps_lens.evaluation.lift import content_words, profile_lift
from dps_lens.organism.planted import designated_heads
from dps_lens.organism.train import trained_world
from dps_lens.profile_attention import SHARE_FILE, ProfileAttention, profile_attention
from dps_lens.steering import amplify, attention_emphasis, dps


def test_step_divergence_is_zero_for_the_same_scores_and_the_kl_otherwise():
    reference = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), -1)
    assert step_divergence(reference, reference) == (0.0, 0.0)
    steered = torch.tensor([[0.0, 3.0, float("-inf")], [0.0, 1.0, 0.0]])  # unnormalised, -inf
    kl, flips = step_divergence(steered, reference)
    p = steered[0].softmax(-1)
    expected = float((p[:2] * (p[:2].log() - reference[0, :2])).sum()) / 2
    assert kl == pytest.approx(expected, rel=1e-5) and flips == 0.5
    with pytest.raises(DpsLensError, match="same steps"):
        step_divergence(steered[:1], reference)


def test_profile_lift_counts_output_words_from_the_profile_but_not_the_input():
    example = PreferenceExample(
        "u", "Write about the weather today", ["I adore owls", "Owls and herons at dusk"], "x"
    )
    assert content_words("The OWLS, and the weather!") == ["owls", "weather"]
    assert profile_lift("owls owls weather herons", example) == pytest.approx(3 / 4)
    assert profile_lift("weather today", example) == 0.0  # input words do not count
    assert math.isnan(profile_lift("the and of", example))  # no content word: undefined


@pytest.fixture(scope="module")
def world(planted):
    return trained_world(planted)


def test_the_planted_heads_hold_the_largest_profile_attention_share(planted, world, tmp_path):
    shares = profile_attention(planted, world.split_examples("evaluation", 20))
    planted_heads = set(designated_heads(planted))
    assert set(shares.ranked()[: len(planted_heads)]) == planted_heads
    others = [float(shares.mean[h]) for h in shares.ranked()[len(planted_heads) :]]
    assert min(float(shares.mean[h]) for h in planted_heads) > 0.5 and max(others) < 1e-6
    shares.save(tmp_path)
    loaded = ProfileAttention.load(tmp_path)
    assert torch.equal(loaded.mean, shares.mean) and loaded.n_examples == shares.n_examples
    (tmp_path / SHARE_FILE).write_text("{}")
    with pytest.raises(DpsLensError, match="not a profile-attention file"):
        ProfileAttention.load(tmp_path)


def test_the_generic_head_reads_almost_nothing_of_the_profile():
    from dps_lens.models import load_model
    from dps_lens.organism.planted import generic_heads

    generic = load_model("organism-generic", device="cpu")
    shares = profile_attention(generic, trained_world(generic).split_examples("evaluation", 20))
    (head,) = generic_heads(generic)
    assert float(shares.mean[head]) < 0.01
    assert max(float(shares.mean[h]) for h in designated_heads(generic)) > 0.5


def test_audit_reports_each_method_against_plain_and_resumes(planted, world, tmp_path):
    users = world.split_examples("evaluation", 12, queries_per_user=1)
    heads = list(designated_heads(planted))
    methods = {
        "dps": dps(planted, heads, gamma=1.0),
        "emphasis": attention_emphasis(planted, heads, alpha=0.01),
        "amplify": amplify(planted, heads, alpha=1.0),
    }
    stop = tuple(planted.tokenizer.convert_tokens_to_ids([".", "!"]))
    config = EvalConfig(max_new_tokens=4, extra_stop_ids=stop, n_bootstrap=200)
    report = audit_methods(planted, users, methods, config, tmp_path)
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["plain", "no_profile", "dps", "emphasis", "amplify"]
    assert rows["plain"]["kl"]["value"] == 0.0 and rows["plain"]["flip"]["value"] == 0.0
    assert rows["no_profile"]["kl"]["value"] > 0.1  # removing the profile moves the distribution
    assert rows["amplify"]["kl"]["value"] > 0 and rows["dps"]["flip"]["value"] > 0
    assert report["profile_benefit"]["value"] > 0.3  # the organism follows its profiles
    assert report["gold"]["lift"]["n"] == 12
    assert {tuple(h["head"]) for h in report["attention_top"][:3]} == set(heads)
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert (tmp_path / "audit.md").read_text() == audit_markdown(saved)
    assert (tmp_path / SHARE_FILE).exists() and (tmp_path / "forced.jsonl").exists()
    again = audit_methods(planted, users, methods, config, tmp_path)
    assert again["rows"] == report["rows"]  # resumed from the saved outputs, same numbers
