"""DoLa through ``generate``: equal to a recomputation without cache, a fixed-layer contrast with
one candidate, JSD selection, and one-line errors."""

from __future__ import annotations

import math

import pytest
import torch

from dps_lens.cli import main
from dps_lens.errors import DpsLensError
from dps_lens.steering import generate, method_config
from dps_lens.steering.layer_contrast import LayerContrast, candidate_layers, jensen_shannon
from dps_lens.steering.methods import SteeringContext, dola

PROMPTS = ["The dog and the cat", "Hi"]


def _direct_scores(model, ids: list[int], contrast: LayerContrast) -> torch.Tensor:
    """DoLa scores of the next token, from a full forward without cache."""
    tokens = torch.tensor([ids])
    names = contrast.hook_names()
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    final = logits[0, -1].float().log_softmax(-1)
    early = torch.stack(
        [model.unembed(model.ln_final(cache[n][:, -1:]))[0, -1].float() for n in names]
    ).log_softmax(-1)
    divergence = torch.stack([jensen_shannon(final, e) for e in early])
    premature = early[int(divergence.argmax())]
    plausible = final >= final.max() + math.log(contrast.alpha)
    return (final - premature).masked_fill(~plausible, float("-inf"))


def _prompt_ids(model, text: str) -> list[int]:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [model.tokenizer.bos_token_id, *ids]


def test_cached_batched_dola_equals_recomputation_without_cache(tiny_model):
    n_layers = int(tiny_model.cfg.n_layers)
    steering = dola(n_layers, ",".join(str(layer) for layer in range(n_layers - 1)))
    out = generate(tiny_model, PROMPTS, steering, max_new_tokens=5, batch_size=2,
                   stop_at_eos=False, return_scores=True)  # fmt: skip
    assert out.scores is not None
    for prompt, produced, scores in zip(PROMPTS, out.token_ids, out.scores, strict=True):
        ids = _prompt_ids(tiny_model, prompt)
        for step, token in enumerate(produced):
            direct = _direct_scores(tiny_model, ids, steering.layers)
            assert int(direct.argmax()) == token
            finite = torch.isfinite(direct)
            assert torch.equal(finite, torch.isfinite(scores[step]))
            assert (direct[finite] - scores[step][finite]).abs().max() < 1e-4
            ids.append(token)


def test_one_candidate_is_the_fixed_layer_contrast(tiny_llama):
    steering = dola(int(tiny_llama.cfg.n_layers), "1", plausibility=0.2)
    out = generate(tiny_llama, PROMPTS[:1], steering, max_new_tokens=1, return_scores=True)
    ids = torch.tensor([_prompt_ids(tiny_llama, PROMPTS[0])])
    logits, cache = tiny_llama.run_with_cache(ids)
    final = logits[0, -1].float().log_softmax(-1)
    layer = tiny_llama.unembed(tiny_llama.ln_final(cache["blocks.1.hook_resid_post"]))
    fixed = final - layer[0, -1].float().log_softmax(-1)
    fixed = fixed.masked_fill(final < final.max() + math.log(0.2), float("-inf"))
    assert out.scores is not None
    finite = torch.isfinite(fixed)
    assert torch.equal(finite, torch.isfinite(out.scores[0][0]))
    assert (fixed[finite] - out.scores[0][0][finite]).abs().max() < 1e-4


def test_the_premature_layer_is_the_one_of_largest_divergence():
    final = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    same, flat = final.clone(), torch.zeros(2, 3)
    contrast = LayerContrast((3, 5))
    assert contrast.select(final, torch.stack([same, flat])).tolist() == [1, 1]
    assert contrast.select(final, torch.stack([flat, same])).tolist() == [0, 0]
    assert float(jensen_shannon(final.log_softmax(-1), final.log_softmax(-1)).abs().max()) < 1e-7


def test_candidate_buckets_and_bad_values():
    assert candidate_layers("low", 30) == tuple(range(0, 15, 2))
    assert candidate_layers("high", 30) == tuple(range(15, 29, 2))
    assert candidate_layers("high", 3) == (1,) and candidate_layers("0,1", 3) == (0, 1)
    with pytest.raises(DpsLensError, match="out of range"):
        candidate_layers("2", 3)  # the last block is the final layer
    with pytest.raises(DpsLensError, match="comma-separated integers"):
        method_config("dola", premature_layers="middle")
    for bad in (0.0, float("nan"), 1.5):
        with pytest.raises(DpsLensError, match="plausibility"):
            method_config("dola", plausibility=bad)


def test_dola_builds_from_its_config_and_runs_from_the_command_line(tiny_llama, tmp_path, capsys):
    built = method_config("dola", premature_layers="low").build(SteeringContext(tiny_llama))
    assert built.layers is not None and built.layers.layers == (0,)
    out = tmp_path / "steered.jsonl"
    args = ["steer", "--model", "tiny-llama", "--device", "cpu", "--method", "dola",
            "--premature-layers", "0,1", "--plausibility", "0.05", "--max-new-tokens", "3",
            "--prompt", "The dog", "--out", str(out)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert out.read_text().strip()
