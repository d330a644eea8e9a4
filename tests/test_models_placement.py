"""Precision and placement: bf16 weights keep the float32 ranking, a split model its values."""

from __future__ import annotations

import pytest
import torch

from dps_lens.cli import main
from dps_lens.errors import DpsLensError
from dps_lens.models import load_model
from dps_lens.organism.world import World
from dps_lens.scoring import ScanConfig, score_heads

LAYERS_ON_DISK = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}


@pytest.fixture(scope="module")
def discovery():
    return World().split_examples("discovery", 16, queries_per_user=2)


@pytest.fixture(scope="module")
def fp32(planted, discovery):
    return score_heads(planted, discovery, ScanConfig(batch_size=64), progress=False)


def test_bf16_weights_keep_the_float32_ranking_and_float32_scores(discovery, fp32):
    bf16 = load_model("organism-planted", device="cpu", dtype="bfloat16")
    scores = score_heads(bf16, discovery, ScanConfig(batch_size=64), progress=False)
    assert scores.per_example.dtype == torch.float32
    assert scores.top_k(3) == fp32.top_k(3)
    # bf16 keeps 8 bits of mantissa: the large scores move by a few percent at most
    torch.testing.assert_close(scores.mean, fp32.mean, atol=0.05, rtol=0.05)


def test_a_model_split_between_cpu_and_disk_gives_the_single_device_values(
    discovery, fp32, tmp_path
):
    split = load_model(
        "organism-planted", device_map=LAYERS_ON_DISK, offload_folder=tmp_path / "offload"
    )
    assert getattr(split.original_model, "hf_device_map", None) == LAYERS_ON_DISK
    scores = score_heads(split, discovery, ScanConfig(batch_size=64), progress=False)
    torch.testing.assert_close(scores.per_example, fp32.per_example, atol=1e-6, rtol=0)


def test_placement_options_are_checked():
    with pytest.raises(DpsLensError, match="alternatives"):
        load_model("tiny-llama", device="cpu", device_map="auto")
    with pytest.raises(DpsLensError, match="need --device-map"):
        load_model("tiny-llama", n_devices=2)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device-map", "{oops"], "--device-map is not valid JSON"),
        (["--device-map", "auto", "--max-memory", "[1]"], "must be a JSON object"),
        (["--device", "cpu", "--device-map", "auto"], "alternatives"),
    ],
)
def test_placement_flags_give_one_line_errors(extra, message, capsys):
    assert main(["info", "--model", "tiny-llama", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_info_runs_with_a_device_map(capsys):
    assert main(["info", "--model", "tiny-llama", "--device-map", '{"": "cpu"}']) == 0
    assert "n_layers" in capsys.readouterr().out
