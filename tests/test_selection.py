"""Saved head sets and saved scores: used as saved, validated on load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dps_lens.data import ExampleRef
from dps_lens.errors import DpsLensError
from dps_lens.scoring import HeadScores
from dps_lens.selection import read_heads


def saved_scores(tmp_path, k: int = 3):
    per_example = torch.arange(4 * 3 * 4, dtype=torch.float32).reshape(4, 3, 4) / 10
    scores = HeadScores(
        per_example,
        torch.zeros(4),
        "m",
        "h",
        [ExampleRef(i, f"u{i}") for i in range(4)],
        {"n_bootstrap": 20},
    )
    scores.save(tmp_path)
    scores.save_reports(tmp_path, k)
    return scores


def test_a_saved_head_set_is_used_as_saved_unless_k_is_given(tmp_path):
    scores = saved_scores(tmp_path, k=3)
    assert read_heads(tmp_path) == scores.top_k(3)
    assert read_heads(tmp_path / "top_k.json") == scores.top_k(3)
    assert read_heads(tmp_path, k=5) == scores.top_k(5)
    assert read_heads(tmp_path / "top_k.json", k=2) == scores.top_k(2)
    with pytest.raises(DpsLensError, match="lists only 3"):
        read_heads(tmp_path / "top_k.json", k=4)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda t, m: t.update(per_example=t["per_example"][0]), "per_example has shape"),
        (lambda t, m: m.update(example_ids=m["example_ids"][:3]), "3 example ids for 4 rows"),
        (lambda t, m: t.update(mean=torch.zeros(2, 4)), "mean has shape"),
        (lambda t, m: t.update(mean=t["mean"] + 1), "mean does not equal"),
        (lambda t, m: t.pop("clean_loss"), "lack or mistype"),
        (
            lambda t, m: m.update(example_ids=["0:u0", "x", "2:u2", "3:u3"]),
            "is not <index>:<user_id>",
        ),
    ],
)
def test_tampered_scores_are_refused(tmp_path, tamper, message):
    saved_scores(tmp_path)
    tensors = load_file(tmp_path / "scores.safetensors")
    meta = json.loads((tmp_path / "scores.json").read_text())
    tamper(tensors, meta)
    save_file(tensors, tmp_path / "scores.safetensors")
    (tmp_path / "scores.json").write_text(json.dumps(meta))
    with pytest.raises(DpsLensError, match=message):
        HeadScores.load(tmp_path)


def test_truncated_scores_are_refused(tmp_path):
    saved_scores(tmp_path)
    path = tmp_path / "scores.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DpsLensError, match="unreadable"):
        HeadScores.load(tmp_path)


def test_a_head_set_of_another_model_is_refused_unless_allowed(tmp_path, capsys):
    from dps_lens.cli import main

    saved_scores(tmp_path, k=2)  # model id "m"
    assert read_heads(tmp_path, model_id="m") == read_heads(tmp_path)
    with pytest.raises(DpsLensError, match="found on model 'm', not 'other'"):
        read_heads(tmp_path, model_id="other")
    with pytest.raises(DpsLensError, match="found on model 'm'"):
        read_heads(tmp_path, k=3, model_id="other")
    listing = tmp_path / "free.json"
    listing.write_text(json.dumps({"k": 1, "heads": [[1, 1]], "model_id": "organism-free"}))
    steer = ["steer", "--model", "organism-planted", "--prompt", "Question: suggest a pet", "--heads", str(listing),
             "--max-new-tokens", "2"]  # fmt: skip
    assert main(steer) == 2
    assert "--allow-other-model" in capsys.readouterr().err
    assert main([*steer, "--allow-other-model"]) == 0
