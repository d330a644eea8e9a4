"""Exactness on every tiny model family (GPT-2, Llama, Gemma 3, Qwen2) through TransformerBridge.

For each family: the bridge's logits equal the HF model's, zero-ablating a head at ``hook_z``
equals removing its rows of the HF output projection, a forked forward equals separate forwards,
KV-cached decoding (plain, DPS and the head-editing methods) equals greedy recomputation without a
cache, and an edit of the attention pattern (emphasis on the profile) is what the values are
averaged with. The Gemma 3
model has sliding-window and global layers (window 8, shorter than the prompts), QK-norm and one
KV head shared by all query heads; Qwen2 has biased Q/K/V projections and grouped-query attention.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from dps_lens.data import PreferenceExample, encoder_for, get_template
from dps_lens.data.encoding import pad, pad_id_of
from dps_lens.errors import ModelLoadError
from dps_lens.fork import fork_at
from dps_lens.interventions import PromptLayout, ablate_heads, get_ablation, head_directions
from dps_lens.models import _infer_architectures, load_model
from dps_lens.steering import generate, methods
from dps_lens.tiny import TINY_MODELS, hf_model, tiny_model_dir
from tests.conftest import SHARED
from tests.helpers import head_output_removed

FAMILIES = ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-qwen2"]
PROMPTS = [
    "History 1: I love owls.\nWhich animal?",
    "Hi",
    "History 1: tea\nHistory 2: more tea\nWhich drink?",
]
EXAMPLES = [
    PreferenceExample("u0", "Which animal?", ["I love owls.", "Owls at dusk are the best."], "owl"),
    PreferenceExample("u1", "Which drink?", ["tea", "more tea", "green tea, always"], "tea"),
    PreferenceExample("u2", "Hi", ["hello there"], "hi"),
]
ATOL = 1e-5


def test_every_tiny_family_is_covered():
    assert sorted(FAMILIES) == sorted(TINY_MODELS)


@pytest.fixture(scope="module", params=FAMILIES)
def model(request: pytest.FixtureRequest):
    return load_model(request.param, device="cpu")


def _padded(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts as one left-padded batch: tokens and attention mask (1 = real token)."""
    ids = [model.to_tokens(p)[0].tolist() for p in PROMPTS]
    tokens, real = pad(ids, pad_id_of(model.tokenizer), side="left")
    return tokens, real.long()


def _heads(model) -> list[tuple[int, int]]:
    """A head of the first layer and one of the last (for Gemma 3: a local and a global layer)."""
    last = int(model.cfg.n_layers) - 1
    return [(0, 1), (last, int(model.cfg.n_heads) - 1)]


def test_bridge_logits_equal_the_hf_models(model):
    tokens, attention = _padded(model)
    with torch.no_grad():
        bridge = model(tokens, attention_mask=attention)
        # left padding: positions count real tokens only (the bridge derives them from the mask)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        hf = model.original_model(tokens, attention_mask=attention, position_ids=positions).logits
    real = attention.bool()
    torch.testing.assert_close(bridge[real], hf[real], atol=ATOL, rtol=0)


@pytest.mark.parametrize("which", [0, 1])
def test_hook_z_zero_ablation_equals_removing_the_heads_output_rows(model, which):
    layer, head = _heads(model)[which]
    tokens = model.to_tokens(PROMPTS[0])
    with torch.no_grad():
        clean = model(tokens)
        with ablate_heads(model, [(layer, head)], mode="zero"):
            ablated = model(tokens)
        with head_output_removed(model, layer, head):
            reference = model.original_model(tokens).logits
    assert (ablated - clean).abs().max() > 1e-4  # the ablation does something
    torch.testing.assert_close(ablated, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fork_layer", [0, 1])
def test_fork_gives_the_logits_of_separate_forwards(model, fork_layer):
    tokens, attention = _padded(model)
    real = attention.bool()
    layer, head = _heads(model)[1]
    batch = tokens.shape[0]
    weights = torch.zeros(2 * batch, int(model.cfg.n_layers), int(model.cfg.n_heads))
    weights[batch:, layer, head] = 1.0  # copy 0: full model; copy 1: head ablated
    with torch.no_grad():
        full = model(tokens, attention_mask=attention)
        with ablate_heads(model, [(layer, head)], mode="zero", key_mask=real):
            masked = model(tokens, attention_mask=attention)
        with fork_at(model, fork_layer, copies=3):
            copies = model(tokens, attention_mask=attention)
        with (
            fork_at(model, fork_layer),
            ablate_heads(model, weights, mode="zero", key_mask=real.repeat(2, 1)),
        ):
            forked = model(tokens, attention_mask=attention)
    assert copies.shape[0] == 3 * batch and forked.shape[0] == 2 * batch
    for c in range(3):
        torch.testing.assert_close(
            copies[c * batch : (c + 1) * batch][real], full[real], atol=ATOL, rtol=0
        )
    torch.testing.assert_close(forked[:batch][real], full[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(forked[batch:][real], masked[real], atol=ATOL, rtol=0)


def _greedy_without_cache(
    model, prompt_ids: list[int], steps: int, steering=None
) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding by full forwards over the whole sequence at every step (no cache): the
    tokens and the scores each was picked from."""
    ids, rows = list(prompt_ids), []
    for _ in range(steps):
        tokens = torch.tensor([ids])
        with torch.no_grad():
            full = model(tokens)[:, -1]
            if steering is None:
                scores = full.log_softmax(-1)
            else:
                with ablate_heads(model, steering.weights, steering.mode, steering.means):
                    masked = model(tokens)[:, -1]
                scores = steering.rule.combine(full, masked)
        rows.append(scores[0])
        ids.append(int(scores[0].argmax()))
    return ids[len(prompt_ids) :], torch.stack(rows)


@pytest.mark.parametrize("method", ["plain", "dps"])
def test_cached_generation_equals_greedy_recomputation(model, method):
    steering = methods.dps(model, _heads(model), gamma=1.5) if method == "dps" else None
    out = generate(
        model, PROMPTS, steering, max_new_tokens=5, stop_at_eos=False, return_scores=True
    )
    assert out.scores is not None
    for prompt_ids, token_ids, scores in zip(
        out.prompt_ids, out.token_ids, out.scores, strict=True
    ):
        expected_ids, expected_scores = _greedy_without_cache(model, prompt_ids, 5, steering)
        assert token_ids == expected_ids
        torch.testing.assert_close(scores, expected_scores, atol=1e-4, rtol=0)
        if steering is not None:  # the steering changes the scores
            _, plain_scores = _greedy_without_cache(model, prompt_ids, 1)
            assert (scores[0] - plain_scores[0]).abs().max() > 1e-3


def test_gemma3_local_layers_attend_within_the_window_only():
    model = load_model("tiny-gemma3", device="cpu")
    window = TINY_MODELS["tiny-gemma3"].sliding_window
    tokens = model.to_tokens(PROMPTS[0])
    _, cache = model.run_with_cache(tokens)
    n = tokens.shape[1]
    distance = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    for layer, kind in enumerate(model.original_model.config.layer_types):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]
        outside = pattern[:, distance >= window] if kind == "sliding_attention" else None
        if outside is not None:
            assert outside.abs().max() == 0, f"layer {layer} attends beyond its window"
        else:
            assert pattern[:, distance >= window].abs().max() > 0, f"layer {layer} is not global"
    assert "sliding_attention" in model.original_model.config.layer_types
    assert "full_attention" in model.original_model.config.layer_types


def test_a_gguf_model_gets_its_architecture_from_its_class():
    hf = hf_model(TINY_MODELS["tiny-gemma3"], vocab_size=259)
    hf.config.architectures = None  # as loaded from GGUF metadata
    _infer_architectures(hf)
    assert hf.config.architectures == ["Gemma3ForCausalLM"]


def test_a_config_naming_no_architecture_is_one_readable_error(tmp_path):
    directory = shutil.copytree(tiny_model_dir("tiny-gemma3"), tmp_path / "gemma3")
    config = json.loads((directory / "config.json").read_text())
    del config["architectures"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as raised:
        load_model(directory, device="cpu")
    message = str(raised.value)
    assert "\n" not in message and "Available architectures" not in message, message
    assert "gemma3_text" in message and len(message) < 400, message


def _fetched_gemma3() -> Path:
    return Path(os.environ.get("DPS_LENS_GEMMA3") or SHARED / "models" / "gemma3-270m")


@pytest.mark.skipif(
    not (_fetched_gemma3() / "config.json").exists() and not list(_fetched_gemma3().glob("*.gguf")),
    reason=f"no fetched Gemma 3 270M at {_fetched_gemma3()} (set DPS_LENS_GEMMA3, or run "
    "`dps-lens fetch gemma3-270m --accept-terms --out DIR`)",
)
def test_the_fetched_gemma3_ablates_and_generates():
    model = load_model(_fetched_gemma3(), device="cpu")
    assert model.cfg.architecture == "Gemma3ForCausalLM"
    tokens = model.to_tokens("The capital of France is")
    with torch.no_grad():
        clean = model(tokens)
        torch.testing.assert_close(clean, model.original_model(tokens).logits, atol=1e-4, rtol=0)
        with ablate_heads(model, [(0, 0)], mode="zero"):
            ablated = model(tokens)
    assert torch.isfinite(ablated).all() and (ablated - clean).abs().max() > 1e-3
    out = generate(model, "The capital of France is", max_new_tokens=3, stop_at_eos=False)
    assert len(out.token_ids[0]) == 3


def test_an_edited_attention_pattern_is_what_the_values_are_averaged_with(model):
    """Emphasis edits ``hook_pattern``: the head's ``z`` in the same run is the edited pattern
    times the values (a shared KV head repeated for grouped-query attention), and the logits move."""
    encoded = encoder_for(model, get_template("history")).encode(EXAMPLES[0])
    tokens = torch.tensor([encoded.input_ids])
    layout = PromptLayout.right_padded([encoded.target_start], [encoded.profile_span])
    last = int(model.cfg.n_layers) - 1
    seen = {}

    def keeper(name):
        def keep(value, hook):
            seen[name] = value.detach().clone()

        return keep

    names = [f"blocks.{last}.attn.{h}" for h in ("hook_pattern", "hook_v", "hook_z")]
    with torch.no_grad():
        clean = model(tokens)
        with (
            ablate_heads(model, [(last, 0)], get_ablation("emphasis", alpha=0.01), layout=layout),
            model.hooks(fwd_hooks=[(name, keeper(name)) for name in names]),
        ):
            edited = model(tokens)
    pattern, v, z = (seen[name][0] for name in names)  # [head, q, k], [k, kv, d], [q, head, d]
    v = v.repeat_interleave(pattern.shape[0] // v.shape[1], dim=1)
    torch.testing.assert_close(z, torch.einsum("hqk,khd->qhd", pattern, v), atol=1e-5, rtol=0)
    assert (edited - clean).abs().max() > 1e-4


def _edited_without_cache(model, prompt, span, steps, steering):
    """Greedy decoding with ``steering``'s edit by full forwards over the whole sequence (no
    cache): the profile span and the decoded positions placed by hand at every step."""
    ids, rows = list(prompt), []
    for _ in range(steps):
        layout = PromptLayout.right_padded([len(prompt)], [span])
        with torch.no_grad(), ablate_heads(model, steering.weights, steering.mode, layout=layout):
            scores = model(torch.tensor([ids]))[0, -1].log_softmax(-1)
        rows.append(scores)
        ids.append(int(scores.argmax()))
    return ids[len(prompt) :], torch.stack(rows)


@pytest.mark.parametrize("method", ["attention_emphasis", "head_shift", "amplify"])
def test_cached_batched_editing_equals_recomputation(model, method):
    heads = _heads(model)
    if method == "attention_emphasis":
        steering = methods.attention_emphasis(model, heads, alpha=0.05)
    elif method == "head_shift":
        steering = methods.head_shift(model, heads, head_directions(model, EXAMPLES), alpha=3.0)
    else:
        steering = methods.amplify(model, heads, alpha=2.0)
    out = generate(
        model, EXAMPLES, steering, max_new_tokens=4, stop_at_eos=False, return_scores=True
    )
    plain = generate(model, EXAMPLES, max_new_tokens=1, stop_at_eos=False, return_scores=True)
    assert out.scores is not None and plain.scores is not None
    encoder = encoder_for(model, get_template("history"), int(model.cfg.n_ctx) - 4)
    for i, example in enumerate(EXAMPLES):
        encoded = encoder.encode(example, with_target=False)
        assert out.prompt_ids[i] == encoded.input_ids
        ids, scores = _edited_without_cache(
            model, encoded.input_ids, encoded.profile_span, 4, steering
        )
        assert out.token_ids[i] == ids
        torch.testing.assert_close(out.scores[i], scores, atol=1e-4, rtol=0)
    moved = max(
        float((o[0] - p[0]).abs().max()) for o, p in zip(out.scores, plain.scores, strict=True)
    )
    assert moved > 1e-3  # the edit changes the scores
