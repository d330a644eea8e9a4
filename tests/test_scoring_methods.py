"""The fast and approximate discovery methods: layer-skipping exact scan, attribution (with
integrated gradients), hybrid, activation patching; equality, ground truth and resume."""

import pytest
import torch

from dps_lens.data import collate, encoder_for, get_template
from dps_lens.errors import DpsLensError
from dps_lens.interventions import ablate_heads
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.loss import forward_nll
from dps_lens.scoring.patching import patched_losses, source_activations
from tests.helpers import interrupted_scan
from tests.test_scoring import _naive_pcs

PLANTED_HEADS = {(1, 1), (1, 3), (2, 2)}


@pytest.fixture(scope="module")
def discovery():
    return World().split_examples("discovery", 20, queries_per_user=1)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_layer_skipping_scan_equals_the_naive_loop_for_any_grouping(tiny_llama, examples, batch_size):  # fmt: skip
    config = ScanConfig(batch_size=batch_size)
    scores = score_heads(tiny_llama, examples, config, progress=False)
    torch.testing.assert_close(
        scores.per_example, _naive_pcs(tiny_llama, examples, "zero"), atol=2e-6, rtol=0
    )


def test_integrated_gradients_are_complete_along_the_all_heads_path(tiny_llama, examples):
    """Σ_heads IG attributions = L(every head ablated) − L(clean), up to the quadrature error."""
    config = ScanConfig(method="attribution", ig_steps=64, batch_size=8)
    scores = score_heads(tiny_llama, examples[:2], config, progress=False)
    batch = collate(encoder_for(tiny_llama, get_template("history")).encode_many(examples[:2]), 0)
    every_head = [(l, h) for l in range(tiny_llama.cfg.n_layers) for h in range(tiny_llama.cfg.n_heads)]  # fmt: skip
    clean = forward_nll(tiny_llama, batch)
    with ablate_heads(tiny_llama, every_head):
        ablated = forward_nll(tiny_llama, batch)
    total, effect = scores.per_example.sum(dim=(1, 2)), ablated - clean
    torch.testing.assert_close(total, effect, atol=0.02 * float(effect.abs().max()), rtol=0)


def test_first_order_attribution_is_the_directional_derivative(tiny_llama, examples):
    """(z̃ − z)·∂L/∂z is d/dε L(z + ε(z̃ − z)) at 0, a head weighted by ε in the zero mask
    (Richardson-extrapolated finite differences, float32)."""
    estimate = score_heads(tiny_llama, examples[:2], ScanConfig(method="attribution"), progress=False)  # fmt: skip
    batch = collate(encoder_for(tiny_llama, get_template("history")).encode_many(examples[:2]), 0)
    clean = forward_nll(tiny_llama, batch)

    def difference(layer: int, head: int, eps: float) -> torch.Tensor:
        weights = torch.zeros(tiny_llama.cfg.n_layers, tiny_llama.cfg.n_heads)
        weights[layer, head] = eps
        with ablate_heads(tiny_llama, weights):
            return (forward_nll(tiny_llama, batch) - clean) / eps

    for layer, head in [(0, 1), (1, 3), (2, 0)]:
        slope = 2 * difference(layer, head, 0.02) - difference(layer, head, 0.04)
        got = estimate.per_example[:, layer, head]
        torch.testing.assert_close(got, slope, atol=1e-4, rtol=0.01)


def test_attribution_and_hybrid_recover_the_planted_heads(planted, discovery):
    attribution = score_heads(planted, discovery, ScanConfig(method="attribution"), progress=False)
    assert set(attribution.top_k(2)) == {(1, 1), (1, 3)}
    hybrid = score_heads(
        planted, discovery, ScanConfig(method="hybrid", hybrid_top=4), progress=False
    )
    assert set(hybrid.top_k(3)) == PLANTED_HEADS
    assert len(hybrid.ranked()) == 4 and hybrid.config["method"] == "hybrid"
    exact = score_heads(
        planted, discovery, ScanConfig(heads=tuple(hybrid.top_k(4))), progress=False
    )
    torch.testing.assert_close(hybrid.per_example, exact.per_example, equal_nan=True)


def test_patching_a_run_with_its_own_activations_changes_nothing(tiny_llama, examples):
    encoded = encoder_for(tiny_llama, get_template("history")).encode_many(examples[:3])
    sources = source_activations(tiny_llama, encoded, pad_id=0)
    losses = patched_losses(tiny_llama, encoded, sources, layer=1, heads=[0, 2], pad_id=0)
    clean = forward_nll(tiny_llama, collate(encoded, 0))
    torch.testing.assert_close(losses, clean.repeat(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_activation_patching_finds_the_planted_heads(planted, discovery, direction):
    config = ScanConfig(method="activation-patching", direction=direction)
    scores = score_heads(planted, discovery, config, progress=False)
    assert set(scores.top_k(2)) == {(1, 1), (1, 3)}
    assert scores.mean[0].abs().max() < 0.05  # layer 0 cannot read the profile


@pytest.mark.parametrize("method", ["exact", "attribution", "activation-patching"])
def test_every_method_resumes_after_an_interruption(tiny_llama, examples, tmp_path, method, monkeypatch):  # fmt: skip
    config = ScanConfig(method=method, batch_size=2)
    fresh = score_heads(tiny_llama, examples, config, progress=False)
    interrupted_scan(tiny_llama, examples, config, tmp_path, monkeypatch, after=2)
    resumed = score_heads(tiny_llama, examples, config, checkpoint_dir=tmp_path, progress=False)
    torch.testing.assert_close(resumed.per_example, fresh.per_example, atol=1e-6, rtol=0)


def test_unsupported_combinations_are_refused(tiny_llama, examples):
    with pytest.raises(DpsLensError, match="unknown method"):
        ScanConfig(method="magic")
    with pytest.raises(DpsLensError, match="attribution scores support"):
        score_heads(tiny_llama, examples, ScanConfig(method="attribution", mode="uniform"), progress=False)  # fmt: skip


def test_auto_batch_size_fits_longer_prompts_with_fewer_rows(tiny_llama):
    from dps_lens.scoring.pcs import auto_batch_size

    short, long = (auto_batch_size(tiny_llama, n, cap=10**9) for n in (64, 4096))
    assert short > long >= 1
    assert auto_batch_size(tiny_llama, 4096, backward=True, cap=10**9) < long
    assert auto_batch_size(tiny_llama, 64) <= 64
    with pytest.raises(DpsLensError, match="lower --max-length"):
        auto_batch_size(tiny_llama, 10**7)  # 10 million tokens: petabytes of attention scores


def test_an_emphasis_scan_scores_how_much_emphasising_each_head_lowers_the_loss(planted, discovery):
    config = ScanConfig(mode="emphasis", alpha=0.01, batch_size=8)
    scores = score_heads(planted, discovery, config, progress=False)
    encoder = encoder_for(planted, get_template("history"))
    encoded = encoder.encode_many(discovery[:3])
    batch = collate(encoded, 0)
    clean = forward_nll(planted, batch)
    from dps_lens.interventions import get_ablation
    from dps_lens.scoring.units import scan_layout

    with ablate_heads(
        planted, [(1, 1)], get_ablation("emphasis", alpha=0.01), layout=scan_layout(encoded)
    ):
        edited = forward_nll(planted, batch)
    # the score is oriented as a gain: the clean loss minus the loss with the head emphasised
    torch.testing.assert_close(scores.per_example[:3, 1, 1], clean - edited, atol=2e-5, rtol=0)
    others = [(l, h) for l in range(3) for h in range(4) if (l, h) not in PLANTED_HEADS]
    assert max(float(scores.per_example[:, l, h].abs().max()) for l, h in others) < 1e-4
    assert set(scores.top_k(3)) == PLANTED_HEADS  # only the planted heads read the profile
    raced = score_heads(planted, discovery, ScanConfig(mode="emphasis", method="racing", k=2),
                        progress=False)  # fmt: skip
    assert set(raced.top_k(2)) <= PLANTED_HEADS


def test_scan_parameters_must_belong_to_the_mode():
    with pytest.raises(DpsLensError, match="--alpha applies to modes amplify, emphasis"):
        ScanConfig(mode="zero", alpha=0.5)
    with pytest.raises(DpsLensError, match="alpha must be <= 1"):
        ScanConfig(mode="emphasis", alpha=3.0)
    with pytest.raises(DpsLensError, match="needs directions"):
        ScanConfig(mode="shift")
