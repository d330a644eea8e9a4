"""AtP*'s GradDrop: L backward passes, each without one layer's residual write."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dps_lens.data import collate, encoder_for, get_template
from dps_lens.data.encoding import pad_id_of, real_token_mask
from dps_lens.errors import DpsLensError
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.attribution import attribution_batch
from dps_lens.scoring.loss import label_positions, target_nll


def direct_graddrop(model, batch, real) -> Tensor:
    """Per-layer AtP with layer ℓ's attention and MLP outputs detached, |·| averaged over L − 1."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    total = torch.zeros(batch.tokens.shape[0], n_layers, n_heads)
    for dropped in range(n_layers):
        seen: dict[int, Tensor] = {}

        def capture(z, hook, seen=seen):
            seen[int(hook.name.split(".")[1])] = z
            return z

        def detach(x, hook):
            return x.detach()

        def leaf(x, hook):
            return x.detach().requires_grad_(True)

        hooks = [("hook_embed", leaf)] + [
            (f"blocks.{layer}.attn.hook_z", capture) for layer in range(n_layers)
        ]
        hooks += [
            (f"blocks.{dropped}.attn.hook_out", detach),
            (f"blocks.{dropped}.mlp.hook_out", detach),
        ]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            positions = label_positions(batch)
            logits = model(batch.tokens, return_type="logits", logits_to_keep=positions)
            loss = target_nll(logits, batch, positions).sum()
            zs = [seen[layer] for layer in range(n_layers)]
            grads = torch.autograd.grad(loss, zs, allow_unused=True)
        for layer, (z, grad) in enumerate(zip(zs, grads, strict=True)):
            if grad is not None:  # the dropped layer's own heads get no gradient
                estimate = ((-z.detach()) * grad * real[:, :, None, None]).sum(dim=(1, 3))
                total[:, layer] += estimate.abs()
    return total / (n_layers - 1)


def test_graddrop_equals_the_direct_per_layer_computation(tiny_llama, examples):
    encoded = encoder_for(tiny_llama, get_template("history")).encode_many(examples[:3])
    batch, real = collate(encoded, pad_id_of(tiny_llama.tokenizer)), real_token_mask(encoded)
    ours = attribution_batch(tiny_llama, batch, real, "zero", graddrop=True)
    torch.testing.assert_close(ours, direct_graddrop(tiny_llama, batch, real), atol=1e-5, rtol=1e-4)
    assert (ours >= 0).all()
    plain = attribution_batch(tiny_llama, batch, real, "zero")
    last = int(tiny_llama.cfg.n_layers) - 1  # the last layer's heads have no later layer to drop
    torch.testing.assert_close(
        ours[:, last], plain[:, last].abs() * last / last, atol=1e-5, rtol=1e-4
    )


def test_graddrop_ranks_the_planted_heads_first(planted):
    discovery = World().split_examples("discovery", 20, queries_per_user=1)
    scores = score_heads(
        planted, discovery, ScanConfig(method="attribution", graddrop=True), progress=False
    )
    assert set(scores.top_k(2)) == {(1, 1), (1, 3)}


def test_graddrop_is_refused_with_integrated_gradients():
    with pytest.raises(DpsLensError, match="choose one"):
        ScanConfig(method="attribution", graddrop=True, ig_steps=4)
