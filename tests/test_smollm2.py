"""Integration on a real model: SmolLM2-135M-Instruct (GGUF) and LaMP-7, both from ../shared."""

import pytest
import torch

from dps_lens.data import encoder_for, get_template, load_examples, sample_examples
from dps_lens.models import load_model, model_info
from dps_lens.scoring import HeadScores, ScanConfig, score_heads

from .conftest import LAMP7, SMOLLM2_DIR, needs_shared

pytestmark = [pytest.mark.slow, needs_shared(SMOLLM2_DIR), needs_shared(LAMP7)]


@pytest.fixture(scope="module")
def smollm2():
    return load_model(SMOLLM2_DIR, device="cpu")


def test_gguf_loads_offline_with_its_real_shape(smollm2):
    info = model_info(smollm2)
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.d_head, info.n_ctx) == (
        30,
        9,
        3,
        64,
        8192,
    )
    prompt = smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    tokens = smollm2.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        next_token = smollm2(tokens)[0, -1].argmax()
    assert smollm2.tokenizer.decode(next_token).strip() == "The"


def test_scores_two_layers_on_lamp7_and_reloads(smollm2, tmp_path):
    examples = sample_examples(load_examples(LAMP7), 4, seed=0)
    heads = tuple((layer, head) for layer in (0, 15) for head in range(9))
    config = ScanConfig(mode="zero", batch_size=9, template="chat", heads=heads)
    scores = score_heads(
        smollm2, examples, config, checkpoint_dir=tmp_path / "ckpt", progress=False
    )
    scored = torch.isfinite(scores.mean)
    assert scored[0].all() and scored[15].all() and int(scored.sum()) == 18
    assert torch.isfinite(scores.clean_loss).all() and (scores.clean_loss > 0).all()
    scores.save(tmp_path)
    scores.save_reports(tmp_path, k=5)
    loaded = HeadScores.load(tmp_path)
    assert torch.equal(loaded.per_example.nan_to_num(-9), scores.per_example.nan_to_num(-9))
    assert torch.equal(loaded.mean.nan_to_num(-9), scores.mean.nan_to_num(-9))
    assert loaded.ranked() == scores.ranked() and len(loaded.ranked()) == 18


def test_the_profile_span_of_real_chat_prompts(smollm2):
    example = load_examples(LAMP7)[0]
    encoder = encoder_for(smollm2, get_template("chat"), 192)
    encoded = encoder.encode(example)
    start, end = encoded.span()
    kept = example.profile[len(example.profile) - encoded.n_profile_items :]
    spelled = smollm2.tokenizer.decode(encoded.input_ids[start:end])
    lines = "\n".join(f"History {i}: {item}" for i, item in enumerate(kept, 1))
    assert encoded.n_profile_items < len(example.profile)  # truncated to 192 tokens
    assert "".join(spelled.split()) == "".join(lines.split())
