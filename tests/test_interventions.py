import pytest
import torch

from dps_lens.errors import DpsLensError
from dps_lens.interventions import HeadMask, ablate_heads, head_means, uniform_pattern


def _tokens(model):
    return model.to_tokens(["History 1: I love owls.\nWhich animal?\nThe owl."])


def _remove_wo_rows(model, layer: int, head: int):
    """Zero head ``head``'s input rows of the output projection of ``layer``; returns an undo."""
    d_head = int(model.cfg.d_head)
    rows = slice(head * d_head, (head + 1) * d_head)
    hf = model.original_model
    if hasattr(hf, "transformer"):  # GPT-2 Conv1D weight is [d_in, d_out]
        weight = hf.transformer.h[layer].attn.c_proj.weight
        view = weight.data[rows, :]
    else:  # Llama o_proj weight is [d_out, d_in]
        weight = hf.model.layers[layer].self_attn.o_proj.weight
        view = weight.data[:, rows]
    saved = view.clone()
    view.zero_()
    return lambda: view.copy_(saved)


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_zero_ablation_equals_removing_the_heads_wo_rows(tiny_model, layer, head):
    tokens = _tokens(tiny_model)
    with torch.no_grad(), ablate_heads(tiny_model, [(layer, head)], mode="zero"):
        ablated = tiny_model(tokens)
    undo = _remove_wo_rows(tiny_model, layer, head)
    try:
        with torch.no_grad():
            reference = tiny_model(tokens)
    finally:
        undo()
    with torch.no_grad():
        clean = tiny_model(tokens)
    assert (ablated - clean).abs().max() > 1e-4  # the ablation does something
    torch.testing.assert_close(ablated, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["zero", "mean", "uniform"])
def test_per_row_masks_match_separate_runs(tiny_llama, mode):
    tokens = _tokens(tiny_llama).repeat(3, 1)
    means = head_means(tiny_llama, [(tokens[:1], torch.ones_like(tokens[:1], dtype=torch.bool))])
    weights = torch.zeros(3, 3, 4)
    weights[1, 0, 2] = 1.0
    weights[2, 2, 1] = 0.5
    with torch.no_grad():
        with ablate_heads(tiny_llama, weights, mode=mode, means=means):
            batched = tiny_llama(tokens)
        for row in range(3):
            with ablate_heads(tiny_llama, weights[row], mode=mode, means=means):
                single = tiny_llama(tokens[row : row + 1])
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-5, rtol=0)
        clean = tiny_llama(tokens[:1])
    torch.testing.assert_close(batched[:1], clean, atol=1e-6, rtol=0)  # all-zero row = clean model
    assert (batched[1:2] - clean).abs().max() > 1e-5


def test_mean_mode_replaces_z_with_the_reference_mean(tiny_gpt2):
    tokens = _tokens(tiny_gpt2)
    means = torch.randn(2, 4, int(tiny_gpt2.cfg.d_head))
    seen = {}
    with torch.no_grad(), ablate_heads(tiny_gpt2, [(1, 2)], mode="mean", means=means):
        tiny_gpt2.run_with_hooks(
            tokens,
            fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen.setdefault("z", z.clone()))],
        )
    z = seen["z"]
    torch.testing.assert_close(z[0, :, 2], means[1, 2].expand(z.shape[1], -1))


def test_head_means_average_real_tokens_only(tiny_gpt2):
    tokens = _tokens(tiny_gpt2)
    real = torch.ones_like(tokens, dtype=torch.bool)
    padded = torch.cat([tokens, torch.zeros(1, 5, dtype=torch.long)], 1)
    padded_real = torch.cat([real, torch.zeros(1, 5, dtype=torch.bool)], 1)
    torch.testing.assert_close(
        head_means(tiny_gpt2, [(tokens, real)]),
        head_means(tiny_gpt2, [(padded, padded_real)]),
        atol=1e-6,
        rtol=0,
    )


def test_uniform_mode_makes_the_pattern_uniform(tiny_gpt2):
    tokens = _tokens(tiny_gpt2)
    seen = {}

    def grab(pattern, hook):
        seen["pattern"] = pattern.clone()

    with torch.no_grad(), ablate_heads(tiny_gpt2, [(0, 1)], mode="uniform"):
        tiny_gpt2.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", grab)])
    n = tokens.shape[1]
    expected = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    torch.testing.assert_close(seen["pattern"][0, 1], expected)
    assert not torch.allclose(seen["pattern"][0, 0], expected)


def test_uniform_pattern_respects_cache_offset_and_padding():
    key_mask = torch.tensor([[False, True, True, True]])
    pattern = uniform_pattern(n_queries=1, n_keys=4, key_mask=key_mask, device=torch.device("cpu"))
    torch.testing.assert_close(pattern[0, 0, 0], torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3]))


def test_bad_masks_are_rejected_with_the_fix(tiny_gpt2):
    with pytest.raises(
        DpsLensError, match=r"head \(2, 0\) is out of range: this model has layers 0..1"
    ):
        HeadMask.for_model(tiny_gpt2, [(2, 0)])
    with pytest.raises(DpsLensError, match="within \\[0, 1\\]"):
        HeadMask(torch.full((2, 4), 1.5))
    with pytest.raises(DpsLensError, match="within \\[0, 1\\]"):
        HeadMask(torch.full((2, 4), float("nan")))
    with (
        pytest.raises(DpsLensError, match="but the model has"),
        ablate_heads(tiny_gpt2, torch.zeros(3, 4)),
    ):
        pass
    with (
        pytest.raises(DpsLensError, match="needs the reference means"),
        ablate_heads(tiny_gpt2, [(0, 0)], mode="mean"),
    ):
        pass
    with (
        pytest.raises(DpsLensError, match="batch size 1"),
        torch.no_grad(),
        ablate_heads(tiny_gpt2, torch.ones(2, 2, 4)),
    ):
        tiny_gpt2(_tokens(tiny_gpt2))


def test_hooks_are_removed_after_the_block(tiny_gpt2):
    tokens = _tokens(tiny_gpt2)
    with torch.no_grad():
        before = tiny_gpt2(tokens)
        with ablate_heads(tiny_gpt2, [(0, 0), (1, 1)]):
            pass
        torch.testing.assert_close(tiny_gpt2(tokens), before, atol=0, rtol=0)


def test_oproj_slice_of_every_head_equals_zeroing_the_whole_layer(tiny_llama):
    tokens = _tokens(tiny_llama)
    layer_heads = [(1, h) for h in range(tiny_llama.cfg.n_heads)]
    with torch.no_grad():
        with ablate_heads(tiny_llama, layer_heads, mode="oproj_slice"):
            sliced = tiny_llama(tokens)
        with ablate_heads(tiny_llama, layer_heads, mode="zero"):
            zeroed = tiny_llama(tokens)
        with ablate_heads(tiny_llama, [(1, 0)], mode="oproj_slice"):
            one_slice = tiny_llama(tokens)
        with ablate_heads(tiny_llama, [(1, 0)], mode="zero"):
            one_head = tiny_llama(tokens)
    torch.testing.assert_close(sliced, zeroed, atol=1e-5, rtol=0)
    # One slice is not one head: the residual dims it zeroes mix every head's output.
    assert (one_slice - one_head).abs().max() > 1e-3
