import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from dps_lens.data import collate, encoder_for, get_template, write_jsonl
from dps_lens.errors import DpsLensError, NonFiniteLossError
from dps_lens.interventions import ablate_heads, head_means
from dps_lens.organism.world import World, WorldConfig
from dps_lens.scoring import HeadScores, ScanConfig, score_heads, summarize, target_nll
from dps_lens.scoring.loss import forward_nll
from tests.helpers import discover_args


def _naive_pcs(model, examples, mode):
    """One forward per (example, head), one example at a time: the reference loop."""
    encoder = encoder_for(model, get_template("history"))
    encoded = encoder.encode_many(examples)
    means = None
    if mode == "mean":
        means = head_means(
            model,
            [
                (collate([e], 0).tokens, torch.ones(1, len(e.input_ids), dtype=torch.bool))
                for e in encoded
            ],
        )
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    out = torch.zeros(len(examples), n_layers, n_heads)
    for i, e in enumerate(encoded):
        batch = collate([e], 0)
        clean = forward_nll(model, batch)[0]
        for layer in range(n_layers):
            for head in range(n_heads):
                with ablate_heads(model, [(layer, head)], mode=mode, means=means):
                    out[i, layer, head] = forward_nll(model, batch)[0] - clean
    return out


def test_target_nll_matches_a_manual_computation(tiny_gpt2):
    encoder = encoder_for(tiny_gpt2, get_template("history"))
    examples = World().split_examples("evaluation", 2, queries_per_user=1)
    batch = collate(encoder.encode_many(examples), pad_id=0)
    with torch.no_grad():
        logits = tiny_gpt2(batch.tokens)
    got = target_nll(logits, batch)
    for row in range(2):
        positions = torch.nonzero(batch.target_mask[row]).flatten()
        logprobs = logits[row, positions - 1].log_softmax(-1)
        manual = -logprobs[torch.arange(len(positions)), batch.tokens[row, positions]].mean()
        torch.testing.assert_close(got[row], manual, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["zero", "mean", "uniform"])
def test_batched_scan_equals_the_naive_loop(tiny_model, examples, mode):
    scores = score_heads(tiny_model, examples, ScanConfig(mode=mode, batch_size=7), progress=False)
    reference = _naive_pcs(tiny_model, examples, mode)
    # Random tiny models give small effects (uniform attention is close to their own), so the
    # tolerance is set well below the smallest largest-effect seen (6e-5) and checked against it.
    torch.testing.assert_close(scores.per_example, reference, atol=2e-6, rtol=0)
    assert scores.per_example.abs().max() > 2e-5
    torch.testing.assert_close(scores.mean, reference.mean(0), atol=2e-6, rtol=0)


def test_same_seed_gives_identical_scores(tiny_llama, examples):
    config = ScanConfig(batch_size=5, seed=3)
    first = score_heads(tiny_llama, examples, config, progress=False)
    second = score_heads(tiny_llama, examples, config, progress=False)
    assert torch.equal(first.per_example, second.per_example)
    assert torch.equal(first.ci_low, second.ci_low) and torch.equal(first.ci_high, second.ci_high)


def test_subset_of_heads_leaves_the_rest_unscored(tiny_gpt2, examples):
    scores = score_heads(tiny_gpt2, examples, ScanConfig(heads=((1, 0), (1, 3))), progress=False)
    assert [(r["layer"], r["head"]) for r in scores.ranked()] in (
        [(1, 0), (1, 3)],
        [(1, 3), (1, 0)],
    )
    assert torch.isnan(scores.mean[0]).all()
    with pytest.raises(DpsLensError, match="only 2 heads have finite scores"):
        scores.top_k(3)
    with pytest.raises(DpsLensError, match="out of range"):
        score_heads(tiny_gpt2, examples, ScanConfig(heads=((0, 4),)), progress=False)


def test_empty_example_set_is_refused(tiny_gpt2):
    with pytest.raises(DpsLensError, match="no examples"):
        score_heads(tiny_gpt2, [], progress=False)


def test_head_scores_save_and_load_bit_identical(tiny_gpt2, examples, tmp_path):
    scores = score_heads(tiny_gpt2, examples, ScanConfig(batch_size=8), progress=False)
    scores.save(tmp_path)
    scores.save_reports(tmp_path, k=3)
    loaded = HeadScores.load(tmp_path)
    for name in ("per_example", "clean_loss", "mean", "stderr", "ci_low", "ci_high"):
        assert torch.equal(getattr(loaded, name), getattr(scores, name)), name
    assert loaded.example_ids == scores.example_ids and loaded.data_hash == scores.data_hash
    assert loaded.config == json.loads(json.dumps(scores.config))
    top = json.loads((tmp_path / "top_k.json").read_text())
    assert top["heads"] == [list(h) for h in scores.top_k(3)]
    header, first = (tmp_path / "ranked.csv").read_text().splitlines()[:2]
    assert header.startswith("rank,layer,head,pcs") and first.startswith("1,")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_loading_something_else_names_the_fix(tmp_path):
    with pytest.raises(DpsLensError, match="does not hold saved head scores"):
        HeadScores.load(tmp_path)


def test_summary_statistics():
    per_example = torch.tensor([[[1.0]], [[2.0]], [[3.0]], [[6.0]]])
    summary = summarize(per_example, n_bootstrap=2000, seed=0)
    assert summary.mean.item() == pytest.approx(3.0)
    assert summary.stderr.item() == pytest.approx(per_example.std().item() / 2)
    assert 1.0 <= summary.ci_low.item() < 3.0 < summary.ci_high.item() <= 6.0
    single = summarize(per_example[:1], n_bootstrap=10)
    assert single.stderr.item() == 0.0 and single.ci_low.item() == single.ci_high.item() == 1.0


def test_non_finite_loss_stops_with_the_fix_and_keeps_partial_results(
    tiny_gpt2, examples, tmp_path
):
    calls = {"n": 0}

    def poison_after_three_forwards(resid, hook):
        calls["n"] += 1
        return resid * float("nan") if calls["n"] > 3 else resid

    config = ScanConfig(batch_size=4)
    hooks = [("blocks.0.hook_resid_pre", poison_after_three_forwards)]
    with (
        tiny_gpt2.hooks(fwd_hooks=hooks),
        pytest.raises(NonFiniteLossError, match=r"dtype float32.*partial results are kept"),
    ):
        score_heads(tiny_gpt2, examples, config, checkpoint_dir=tmp_path, progress=False)
    saved = load_file(tmp_path / "checkpoint.safetensors")
    assert int(saved["done"].sum()) == 4  # two clean forwards, then one ablation chunk of 4 rows
    resumed = score_heads(tiny_gpt2, examples, config, checkpoint_dir=tmp_path, progress=False)
    fresh = score_heads(tiny_gpt2, examples, config, progress=False)
    assert torch.equal(resumed.per_example, fresh.per_example)


def test_checkpoint_of_another_scan_is_not_mixed_in(tiny_gpt2, examples, tmp_path):
    score_heads(
        tiny_gpt2, examples, ScanConfig(mode="zero"), checkpoint_dir=tmp_path, progress=False
    )
    with pytest.raises(DpsLensError, match="checkpoint of a different scan"):
        score_heads(
            tiny_gpt2, examples, ScanConfig(mode="uniform"), checkpoint_dir=tmp_path, progress=False
        )


@pytest.mark.slow
def test_scan_killed_with_sigkill_resumes_without_recomputing(tiny_llama, tmp_path):
    examples = World(WorldConfig(seed=5)).split_examples("evaluation", 40, queries_per_user=2)
    data = tmp_path / "data.jsonl"
    write_jsonl(data, examples)
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dps_lens.cli",
        *discover_args("tiny-llama", data, out, "--batch-size", "2"),
    ]
    process = subprocess.Popen(
        command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    checkpoint = out / "checkpoint" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    done_before = 0
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists():
            done_before = int(load_file(checkpoint)["done"].sum())
            if done_before >= 40:
                break
        time.sleep(0.02)
    assert process.poll() is None, "the scan finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = int(load_file(checkpoint)["done"].sum())  # the file is whole despite SIGKILL
    total = len(examples) * 12
    assert 40 <= done_at_kill < total

    forwards = {"n": 0}

    def count(resid, hook):
        forwards["n"] += 1

    config = ScanConfig(batch_size=2)
    with tiny_llama.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", count)]):
        resumed = score_heads(
            tiny_llama, examples, config, checkpoint_dir=out / "checkpoint", progress=False
        )
    assert forwards["n"] == (total - done_at_kill) // 2  # only the unfinished chunks ran
    fresh = score_heads(tiny_llama, examples, config, progress=False)
    assert torch.equal(resumed.per_example, fresh.per_example)
