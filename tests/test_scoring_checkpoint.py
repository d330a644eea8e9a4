"""Checkpoints of a scan: damaged ones are set aside, compute time adds up across resumes (and
not when a finished scan is rerun)."""

from __future__ import annotations

import json

import pytest
import torch

from dps_lens.scoring import ScanConfig, score_heads
from dps_lens.scoring.checkpoint import CHECKPOINT_META, CHECKPOINT_TENSORS
from tests.helpers import interrupted_scan


@pytest.mark.parametrize("damage", ["truncate", "garbage_meta", "wrong_shape"])
def test_a_damaged_checkpoint_is_set_aside_and_the_scan_starts_afresh(
    tiny_llama, examples, tmp_path, monkeypatch, damage
):
    config = ScanConfig(batch_size=2)
    fresh = score_heads(tiny_llama, examples, config, progress=False)
    directory = tmp_path / "checkpoint"
    interrupted_scan(tiny_llama, examples, config, directory, monkeypatch)
    tensors = directory / CHECKPOINT_TENSORS
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:64])
    elif damage == "garbage_meta":
        (directory / CHECKPOINT_META).write_bytes(b"\xff\xfe{")
    else:
        from safetensors.torch import save_file

        save_file(
            {"per_example": torch.zeros(1), "clean_loss": torch.zeros(1), "done": torch.zeros(1)},
            tensors,
        )
    with pytest.warns(UserWarning, match="is damaged"):
        resumed = score_heads(
            tiny_llama, examples, config, checkpoint_dir=directory, progress=False
        )
    torch.testing.assert_close(resumed.per_example, fresh.per_example, atol=1e-6, rtol=0)
    assert [p.name.split(".damaged-")[0] for p in tmp_path.glob("checkpoint.damaged-*")] == [
        "checkpoint"
    ]


def test_compute_time_adds_up_across_resumed_runs(tiny_llama, examples, tmp_path, monkeypatch):
    config = ScanConfig(batch_size=2)
    directory = tmp_path / "checkpoint"
    interrupted_scan(tiny_llama, examples, config, directory, monkeypatch, after=4)
    earlier = json.loads((directory / CHECKPOINT_META).read_text())["seconds"]
    assert earlier > 0
    resumed = score_heads(tiny_llama, examples, config, checkpoint_dir=directory, progress=False)
    final = json.loads((directory / CHECKPOINT_META).read_text())["seconds"]
    assert final > earlier and resumed.config["seconds"] == pytest.approx(final, abs=1e-3)
    # a finished scan rerun computes nothing, so its time (and its saved files) stay the same
    rerun = score_heads(tiny_llama, examples, config, checkpoint_dir=directory, progress=False)
    assert json.loads((directory / CHECKPOINT_META).read_text())["seconds"] == final
    assert rerun.config["seconds"] == resumed.config["seconds"]


def test_clean_losses_are_checkpointed_before_any_head(tiny_llama, examples, tmp_path, monkeypatch):
    config = ScanConfig(batch_size=2)
    directory = tmp_path / "checkpoint"
    interrupted_scan(tiny_llama, examples, config, directory, monkeypatch, after=1)
    from safetensors.torch import load_file

    saved = load_file(directory / CHECKPOINT_TENSORS)
    assert (~torch.isnan(saved["clean_loss"])).sum() == 2 and not saved["done"].any()
