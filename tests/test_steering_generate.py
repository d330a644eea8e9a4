import pytest
import torch

from dps_lens.errors import DpsLensError
from dps_lens.interventions import ablate_heads, head_means
from dps_lens.organism.world import World
from dps_lens.steering import Sampling, generate, methods

PROMPTS = [
    "History 1: I love owls.\nWhich animal?",
    "Hi",
    "History 1: tea\nHistory 2: more tea, always tea\nWhich drink do you like?",
]


def _recomputed_scores(model, steering, prompt_ids, token_ids):
    """Combined scores of every step from full forwards without a cache, one prompt at a time."""
    rows = []
    for step in range(len(token_ids) + 1):
        tokens = torch.tensor([prompt_ids + token_ids[:step]])
        with torch.no_grad():
            full = model(tokens)[:, -1]
            with ablate_heads(model, steering.weights, steering.mode, steering.means):
                masked = model(tokens)[:, -1]
        rows.append(steering.rule.combine(full, masked)[0])
    return torch.stack(rows)


def test_gamma_zero_is_plain_greedy_token_for_token(tiny_model):
    steering = methods.dps(tiny_model, [(0, 1), (1, 2)], gamma=0.0)
    steered = generate(tiny_model, PROMPTS, steering, max_new_tokens=12)
    assert steered.token_ids == generate(tiny_model, PROMPTS, max_new_tokens=12).token_ids


@pytest.mark.parametrize("mode", ["zero", "mean", "uniform", "oproj_slice"])
def test_exact_mode_equals_recomputation_without_cache_at_every_step(tiny_model, mode):
    heads = [(1, 0), (1, 3)]
    means = None
    if mode == "mean":
        tokens = tiny_model.to_tokens(PROMPTS[0])
        means = head_means(tiny_model, [(tokens, torch.ones_like(tokens, dtype=torch.bool))])
    steering = methods.dps(tiny_model, heads, gamma=1.5, mode=mode, means=means)
    out = generate(tiny_model, PROMPTS, steering, max_new_tokens=6, return_scores=True)
    for prompt_ids, token_ids, scores in zip(
        out.prompt_ids, out.token_ids, out.scores, strict=True
    ):
        expected = _recomputed_scores(tiny_model, steering, prompt_ids, token_ids)
        torch.testing.assert_close(scores, expected[: len(scores)], atol=1e-4, rtol=0)


def test_adaptive_gamma_with_plausibility_equals_recomputation(tiny_llama):
    steering = methods.dps(tiny_llama, [(0, 2)], adaptive=True, gamma_cap=3.0, beta=0.05)
    out = generate(tiny_llama, PROMPTS, steering, max_new_tokens=5, return_scores=True)
    for prompt_ids, token_ids, scores in zip(
        out.prompt_ids, out.token_ids, out.scores, strict=True
    ):
        expected = _recomputed_scores(tiny_llama, steering, prompt_ids, token_ids)
        finite = torch.isfinite(expected[: len(scores)])
        assert torch.equal(torch.isfinite(scores), finite)
        torch.testing.assert_close(
            scores[finite], expected[: len(scores)][finite], atol=1e-4, rtol=0
        )


def test_all_zero_weight_map_equals_plain(tiny_model):
    zeros = torch.zeros(tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
    steered = generate(tiny_model, PROMPTS, methods.dps(tiny_model, zeros, gamma=2.0))
    assert steered.token_ids == generate(tiny_model, PROMPTS).token_ids


def test_batched_with_padding_equals_one_by_one(tiny_model):
    steering = methods.dps(tiny_model, [(0, 0), (1, 1)], gamma=1.0)
    batched = generate(tiny_model, PROMPTS, steering, max_new_tokens=8, return_scores=True)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(tiny_model, [prompt], steering, max_new_tokens=8, return_scores=True)
        assert alone.token_ids[0] == batched.token_ids[i]
        torch.testing.assert_close(alone.scores[0], batched.scores[i], atol=1e-4, rtol=0)


def test_shared_prefill_differs_from_exact_for_an_early_head_only(tiny_llama):
    last = tiny_llama.cfg.n_layers - 1

    def scores(heads, masked_run):
        steering = methods.dps(tiny_llama, heads, gamma=1.0, masked_run=masked_run)
        forced = generate(tiny_llama, PROMPTS, steering, max_new_tokens=4, return_scores=True)
        return torch.cat(forced.scores)

    early_gap = (scores([(0, 1)], "exact") - scores([(0, 1)], "shared_prefill")).abs().max()
    assert early_gap > 1e-3
    # A last-layer head cannot change the keys/values of any layer: both modes agree.
    torch.testing.assert_close(
        scores([(last, 1)], "exact"), scores([(last, 1)], "shared_prefill"), atol=1e-4, rtol=0
    )


def test_cad_equals_recomputation_with_and_without_profile(tiny_llama, examples):
    steering = methods.cad(alpha=0.5)
    out = generate(tiny_llama, examples[:3], steering, max_new_tokens=4, return_scores=True)
    no_profile = generate(tiny_llama, examples[:3], max_new_tokens=1, template="no-profile")
    rule = steering.rule
    for i in range(3):
        for step, scores in enumerate(out.scores[i]):
            generated = out.token_ids[i][:step]
            with torch.no_grad():
                full = tiny_llama(torch.tensor([out.prompt_ids[i] + generated]))[:, -1]
                bare = tiny_llama(torch.tensor([no_profile.prompt_ids[i] + generated]))[:, -1]
            torch.testing.assert_close(scores, rule.combine(full, bare)[0], atol=1e-4, rtol=0)


def test_random_heads_are_seeded_and_outside_the_set(tiny_llama):
    heads = [(0, 0), (1, 1), (2, 2)]
    first = methods.random_heads(tiny_llama, heads, seed=3)
    assert first.heads == methods.random_heads(tiny_llama, heads, seed=3).heads
    assert len(first.heads) == 3 and not set(first.heads) & set(heads)
    assert first.heads != methods.random_heads(tiny_llama, heads, seed=4).heads


def test_reference_preset_is_the_authors_decoding(tiny_llama):
    preset = methods.reference(tiny_llama, [(1, 1)])
    assert (preset.mode, preset.masked_run, preset.rule.adaptive) == (
        "uniform",
        "shared_prefill",
        True,
    )
    assert generate(tiny_llama, PROMPTS, preset, max_new_tokens=3).token_ids


def test_sampling_is_seeded_and_tiny_top_p_is_greedy(tiny_llama):
    steering = methods.dps(tiny_llama, [(1, 1)])
    hot = Sampling(temperature=1.5, seed=7)
    first = generate(tiny_llama, PROMPTS, steering, hot, max_new_tokens=8)
    assert (
        first.token_ids == generate(tiny_llama, PROMPTS, steering, hot, max_new_tokens=8).token_ids
    )
    other = generate(tiny_llama, PROMPTS, steering, Sampling(1.5, seed=8), max_new_tokens=8)
    assert other.token_ids != first.token_ids
    nucleus = generate(tiny_llama, PROMPTS, steering, Sampling(1.0, top_p=1e-6), max_new_tokens=8)
    assert nucleus.token_ids == generate(tiny_llama, PROMPTS, steering, max_new_tokens=8).token_ids


def test_stops_at_stop_tokens_and_max_new_tokens(tiny_llama):
    free = generate(tiny_llama, PROMPTS, max_new_tokens=6)
    assert all(len(ids) == 6 for ids in free.token_ids) and not any(free.stopped)
    stop = free.token_ids[0][2]
    stopped = generate(tiny_llama, PROMPTS[:1], max_new_tokens=6, extra_stop_ids=[stop])
    assert stopped.stopped == [True]
    assert stopped.token_ids[0] == free.token_ids[0][: free.token_ids[0].index(stop)]


def test_bad_inputs_get_clear_errors(tiny_llama, examples):
    with pytest.raises(DpsLensError, match="exceeds the limit of"):
        generate(tiny_llama, ["word " * 400], max_new_tokens=8)
    with pytest.raises(DpsLensError, match="PreferenceExamples"):
        generate(tiny_llama, PROMPTS, methods.cad())
    with pytest.raises(DpsLensError, match="out of range"):
        methods.dps(tiny_llama, [(9, 0)])
    with pytest.raises(DpsLensError, match="means"):
        methods.dps(tiny_llama, [(0, 0)], mode="mean")
    per_input = torch.zeros(2, tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads)
    with pytest.raises(DpsLensError, match="2 maps for 3 inputs"):
        generate(tiny_llama, PROMPTS, methods.dps(tiny_llama, per_input))
    with pytest.raises(DpsLensError, match="at least one input"):
        generate(tiny_llama, [])


def test_per_input_weight_maps_steer_each_row_by_its_own_map(tiny_llama):
    n_layers, n_heads = tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads
    maps = torch.zeros(3, n_layers, n_heads)
    maps[1, 0, 1] = 1.0
    maps[2, 1, 2] = 0.5
    out = generate(
        tiny_llama, PROMPTS, methods.dps(tiny_llama, maps), max_new_tokens=4, return_scores=True
    )
    for i in range(3):
        steering = methods.dps(tiny_llama, maps[i])
        alone = generate(tiny_llama, [PROMPTS[i]], steering, max_new_tokens=4, return_scores=True)
        torch.testing.assert_close(out.scores[i], alone.scores[0], atol=1e-4, rtol=0)


def test_dps_raises_personalization_on_the_planted_organism(planted):
    evaluation_examples = World().split_examples("evaluation", 80, queries_per_user=1)
    stop = planted.tokenizer.convert_tokens_to_ids([".", "!"])
    heads = list(planted.planted_spec.heads)

    def rate(steering):
        out = generate(
            planted, evaluation_examples, steering, max_new_tokens=3, extra_stop_ids=stop
        )
        first = [text.split(" ")[0] for text in out.texts]
        return sum(
            w == e.meta["preferred"] for w, e in zip(first, evaluation_examples, strict=True)
        ) / len(first)

    plain = rate(methods.plain())
    assert rate(methods.dps(planted, heads, gamma=1.0)) > plain + 0.1
    assert abs(rate(methods.random_heads(planted, heads, seed=0)) - plain) < 0.1


def test_a_single_string_is_one_prompt(tiny_llama, examples):
    one = generate(tiny_llama, PROMPTS[0], max_new_tokens=3)
    listed = generate(tiny_llama, PROMPTS[:1], max_new_tokens=3)
    assert len(one.texts) == 1 and one.token_ids == listed.token_ids
    single = generate(tiny_llama, examples[0], methods.cad(), max_new_tokens=3)
    assert (
        single.token_ids
        == generate(tiny_llama, examples[:1], methods.cad(), max_new_tokens=3).token_ids
    )


def test_batch_plan_is_how_generate_batches(tiny_llama, monkeypatch):
    import importlib

    module = importlib.import_module("dps_lens.steering.generate")
    assert module.batch_plan([5, 2, 5, 1, 2], 2) == [[3, 1], [4, 0], [2]]
    seen = []
    real = module._generate_chunk

    def spy(chunk, prompts, *args):
        seen.append([len(p) for p in prompts])
        return real(chunk, prompts, *args)

    monkeypatch.setattr(module, "_generate_chunk", spy)
    generate(tiny_llama, PROMPTS, max_new_tokens=1, batch_size=2)
    lengths = [len(p) for p in module.prompt_token_ids(tiny_llama, PROMPTS, max_new_tokens=1)]
    assert seen == [[lengths[i] for i in batch] for batch in module.batch_plan(lengths, 2)]


def test_a_cache_the_bridge_leaves_empty_is_an_error_not_a_wrong_answer(tiny_llama, monkeypatch):
    """Releases of transformers and TransformerLens that disagree on how the cache reaches
    attention leave it empty; decoding must stop with the fix, not continue from one token."""
    from transformers.cache_utils import DynamicLayer

    monkeypatch.setattr(DynamicLayer, "update", lambda self, k, v, *a, **kw: (k, v))
    with pytest.raises(
        DpsLensError, match=r"holds 0 of \d+ positions.*a release dps-lens supports"
    ):
        generate(tiny_llama, PROMPTS[:1], max_new_tokens=2)
