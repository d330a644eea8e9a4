"""The editing interventions: attention emphasis on the profile (PASTA), amplification and the head
shift (ITI), their prompt layout, and the profile directions they shift along."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from dps_lens.data import collate, encoder_for, get_template
from dps_lens.data.encoding import pad_id_of
from dps_lens.errors import DpsLensError
from dps_lens.interventions import (
    DIRECTIONS_FILE,
    HeadDirections,
    PromptLayout,
    ablate_heads,
    get_ablation,
    head_directions,
)
from dps_lens.scoring.units import scan_layout


def _batch(model, examples):
    encoded = encoder_for(model, get_template("history")).encode_many(examples)
    return encoded, collate(encoded, pad_id_of(model.tokenizer))


def _capture(model, tokens, names, **ablation):
    """Cached activations at ``names`` of one forward, with ``ablation`` (ablate_heads kwargs)."""
    seen = {}

    def keeper(name):
        def keep(value, hook):
            seen[name] = value.detach().clone()

        return keep

    hooks = [(name, keeper(name)) for name in names]
    with torch.no_grad():
        if ablation:
            with ablate_heads(model, **ablation), model.hooks(fwd_hooks=hooks):
                logits = model(tokens)
        else:
            with model.hooks(fwd_hooks=hooks):
                logits = model(tokens)
    return logits, seen


def test_the_layout_marks_profile_other_prompt_and_decoded_positions():
    layout = PromptLayout.left_padded([5, 3], [(1, 3), (0, 0)])
    profile, others = layout.profile_keys(7)
    assert profile.tolist() == [
        [False, True, True, False, False, False, False],
        [False] * 7,
    ]
    assert others.tolist() == [
        [True, False, False, True, True, False, False],
        [False, False, True, True, True, False, False],
    ]
    assert layout.decoded_positions(7).tolist() == [
        [False, False, False, False, True, True, True],
        [False, False, False, False, True, True, True],
    ]
    assert len(layout.repeat(2)) == 4 and layout.has_profile
    assert not PromptLayout.right_padded([3], [(0, 0)]).has_profile


@pytest.mark.parametrize("family", ["tiny_gpt2", "tiny_llama"])
def test_emphasis_adds_log_alpha_to_the_scores_of_other_prompt_keys(family, examples, request):
    model = request.getfixturevalue(family)
    encoded, batch = _batch(model, examples[:2])
    layout = scan_layout(encoded)
    names = ["blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern"]
    heads = [(1, h) for h in range(4)]
    alpha = 0.05
    _, seen = _capture(
        model, batch.tokens, names, mask=heads, mode=get_ablation("emphasis", alpha=alpha),
        layout=layout,
    )  # fmt: skip
    scores, pattern = seen[names[0]], seen[names[1]]
    profile, others = layout.profile_keys(batch.tokens.shape[1])
    # the reference: log α added to the pre-softmax scores of the prompt's non-profile keys,
    # rows that never reach a profile key left alone
    shifted = scores + math.log(alpha) * others[:, None, None, :].float()
    expected = shifted.softmax(-1)
    clean = scores.softmax(-1)
    reads = (clean * profile[:, None, None, :]).sum(-1, keepdim=True) > 1e-6
    expected = torch.where(reads, expected, clean)
    torch.testing.assert_close(pattern, expected, atol=1e-5, rtol=0)
    on_profile = (pattern * profile[:, None, None, :]).sum(-1)
    before = (clean * profile[:, None, None, :]).sum(-1)
    assert (on_profile >= before - 1e-6).all() and (on_profile > before + 0.05).any()


def test_emphasis_leaves_rows_without_profile_keys_exactly_unchanged(planted, examples):
    bare = [e.without_profile() for e in examples[:2]]
    encoded, batch = _batch(planted, [examples[0], bare[1]])
    layout = scan_layout(encoded)
    names = ["blocks.1.attn.hook_pattern"]
    _, clean = _capture(planted, batch.tokens, names)
    _, edited = _capture(
        planted, batch.tokens, names, mask=[(1, 1), (1, 3)], mode=get_ablation("emphasis"),
        layout=layout,
    )  # fmt: skip
    clean_p, edited_p = clean[names[0]], edited[names[0]]
    start, _ = encoded[0].span()
    assert torch.equal(edited_p[1], clean_p[1])  # no profile in the row
    assert torch.equal(edited_p[0, :, :start], clean_p[0, :, :start])  # queries before the span
    assert not torch.equal(edited_p[0, 1], clean_p[0, 1])  # the edited head's later rows move


def test_emphasis_at_alpha_one_is_the_clean_model(tiny_llama, examples):
    encoded, batch = _batch(tiny_llama, examples[:2])
    every = [(l, h) for l in range(3) for h in range(4)]
    clean, _ = _capture(tiny_llama, batch.tokens, [])
    same, _ = _capture(
        tiny_llama, batch.tokens, [], mask=every, mode=get_ablation("emphasis", alpha=1.0),
        layout=scan_layout(encoded),
    )  # fmt: skip
    torch.testing.assert_close(same, clean, atol=1e-5, rtol=0)


def test_amplify_scales_the_heads_output_exactly(tiny_gpt2, examples):
    _, batch = _batch(tiny_gpt2, examples[:1])
    name = "blocks.1.attn.hook_z"
    seen_clean, seen = {}, {}

    def before(value, hook):
        seen_clean["z"] = value.detach().clone()

    def after(value, hook):
        seen["z"] = value.detach().clone()

    with torch.no_grad():
        with tiny_gpt2.hooks(fwd_hooks=[(name, before)]):
            tiny_gpt2(batch.tokens)
        with (
            ablate_heads(tiny_gpt2, [(1, 2)], get_ablation("amplify", alpha=0.5)),
            tiny_gpt2.hooks(fwd_hooks=[(name, after)]),
        ):
            tiny_gpt2(batch.tokens)
    expected = seen_clean["z"].clone()
    expected[:, :, 2] *= 1.5
    torch.testing.assert_close(seen["z"], expected, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def planted_directions(planted):
    from dps_lens.organism.train import trained_world

    return head_directions(planted, trained_world(planted).split_examples("discovery", 12))


def test_directions_are_the_normalised_mean_difference_and_the_projection_spread(
    planted, planted_directions
):
    from dps_lens.organism.train import trained_world

    examples = trained_world(planted).split_examples("discovery", 12)
    runs = {}
    for name, template in (("profile", "history"), ("bare", "no-profile")):
        encoded = encoder_for(planted, get_template(template)).encode_many(examples)
        rows = []
        for e in encoded:  # one example at a time, no batching: an independent computation
            _, seen = _capture(planted, torch.tensor([e.input_ids]), ["blocks.1.attn.hook_z"])
            rows.append(seen["blocks.1.attn.hook_z"][0, e.target_start - 1 : -1])
        runs[name] = torch.cat(rows).double()  # [positions, head, d_head]
    difference = (runs["profile"] - runs["bare"]).mean(0)
    theta = difference / difference.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(planted_directions.directions[1].double(), theta, atol=1e-4, rtol=0)
    pooled = torch.cat([runs["profile"], runs["bare"]])
    spread = torch.einsum("phd,hd->ph", pooled, theta).std(0, unbiased=False)
    torch.testing.assert_close(planted_directions.scale[1].double(), spread, atol=1e-4, rtol=1e-4)
    assert planted_directions.n_positions == runs["profile"].shape[0]


def test_shift_moves_only_the_decoded_positions_along_the_direction(planted, planted_directions):
    from dps_lens.organism.train import trained_world

    example = trained_world(planted).split_examples("evaluation", 1)[0]
    encoded, batch = _batch(planted, [example])
    name = "blocks.1.attn.hook_z"
    layout = scan_layout(encoded)
    shift = get_ablation("shift", directions=planted_directions, alpha=2.0)
    store = {}

    def keep(value, hook):
        store["z"] = value.detach().clone()

    with torch.no_grad():
        with planted.hooks(fwd_hooks=[(name, keep)]):
            planted(batch.tokens)
        before = store["z"]
        with (
            ablate_heads(planted, [(1, 3)], shift, layout=layout),
            planted.hooks(fwd_hooks=[(name, keep)]),
        ):
            planted(batch.tokens)
    after, start = store["z"], encoded[0].target_start - 1
    step = 2.0 * planted_directions.scale[1, 3] * planted_directions.directions[1, 3]
    torch.testing.assert_close(after[0, start:, 3] - before[0, start:, 3], step.expand(
        after.shape[1] - start, -1), atol=1e-5, rtol=0)  # fmt: skip
    assert torch.equal(after[0, :start], before[0, :start])  # the prompt before its last token
    assert torch.equal(after[0, start:, :3], before[0, start:, :3])  # the other heads


def test_directions_round_trip_and_refuse_damaged_or_foreign_files(
    planted, tiny_llama, tiny_gpt2, planted_directions, tmp_path
):
    path = planted_directions.save(tmp_path)
    assert path.name == DIRECTIONS_FILE
    loaded = HeadDirections.load(tmp_path)
    assert torch.equal(loaded.directions, planted_directions.directions)
    assert loaded.digest() == planted_directions.digest()
    loaded.check_model(planted)
    with pytest.raises(DpsLensError, match="computed on model 'organism-planted'"):
        loaded.check_model(tiny_llama)  # the same shape, another model
    with pytest.raises(DpsLensError, match="shape"):
        loaded.check_model(tiny_gpt2)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DIRECTIONS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(DpsLensError, match="not a head-directions file"):
        HeadDirections.load(tmp_path / "bad")
    with pytest.raises(DpsLensError, match="no head directions"):
        HeadDirections.load(tmp_path / "missing")
    (tmp_path / "long").mkdir()
    tensors = {"directions": 2 * planted_directions.directions, "scale": planted_directions.scale}
    save_file(tensors, str(tmp_path / "long" / DIRECTIONS_FILE), metadata={
        "format_version": "1", "model_id": "organism-planted", "data_hash": "x",
        "n_examples": "1", "n_positions": "1", "template": "history"})  # fmt: skip
    with pytest.raises(DpsLensError, match="unit vector"):
        HeadDirections.load(tmp_path / "long")


@pytest.mark.parametrize(
    ("mode", "params", "message"),
    [
        ("emphasis", {"alpha": 0.0}, "alpha must be > 0"),
        ("emphasis", {"alpha": 1.5}, "alpha must be <= 1"),
        ("emphasis", {"alpha": float("nan")}, "finite"),
        ("amplify", {"alpha": -0.5}, "alpha must be >= 0"),
        ("amplify", {"alpha": float("inf")}, "finite"),
        ("zero", {"alpha": 1.0}, "has no parameter alpha"),
        ("shift", {}, "needs directions"),
    ],
)
def test_bad_intervention_parameters_are_one_readable_error(mode, params, message):
    with pytest.raises(DpsLensError, match=message):
        get_ablation(mode, **params)


def test_profile_reading_modes_need_a_layout(planted, examples):
    _, batch = _batch(planted, examples[:1])
    with (
        pytest.raises(DpsLensError, match="layout"),
        ablate_heads(planted, [(1, 1)], get_ablation("emphasis")),
    ):
        planted(batch.tokens)
