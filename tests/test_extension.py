"""A new ablation and a new steering method, registered from outside the package, work through
the scan, ``generate`` and the CLI without any change to package code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from dps_lens.cli import main
from dps_lens.data import collate, encoder_for, get_template
from dps_lens.data.encoding import pad_id_of
from dps_lens.interventions import (
    ABLATIONS,
    AblationInputs,
    HookZAblation,
    ablation_names,
    register_ablation,
)
from dps_lens.scoring import ScanConfig, forward_nll, score_heads
from dps_lens.steering import (
    ContrastRule,
    MethodConfig,
    Steering,
    SteeringContext,
    dps,
    generate,
    method_names,
    register_method,
)
from dps_lens.steering.methods import STEERING_METHODS
from tests.helpers import discover_args


class NegateHead(HookZAblation):
    """Flip the sign of the head's output (``w = 1``: ``z ← −z``)."""

    name = "negate"

    def target(self, value: Tensor, layer: int, inputs: AblationInputs) -> Tensor:
        return -value


@dataclass(frozen=True)
class HalfDPS(MethodConfig):
    """DPS whose masked run keeps half of each preference head."""

    name = "half_dps"
    needs_heads = True

    strength: float = 0.5  # contrast strength

    def build(self, context: SteeringContext) -> Steering:
        heads = context.require_heads(self.name)
        full = dps(context.model, heads).weights
        assert full is not None
        return Steering(
            name=self.name, contrast="heads", rule=ContrastRule(self.strength), weights=0.5 * full
        )


@pytest.fixture
def toys() -> Iterator[None]:
    register_ablation(NegateHead)
    register_method(HalfDPS)
    yield
    ABLATIONS.pop("negate")
    STEERING_METHODS.pop("half_dps")


def test_toys_are_listed_beside_the_built_ins(toys):
    assert "negate" in ablation_names() and "zero" in ablation_names()
    assert "half_dps" in method_names() and "dps" in method_names()


def test_toy_ablation_scores_through_the_scan(toys, tiny_llama, examples):
    scores = score_heads(
        tiny_llama, examples[:2], ScanConfig(mode="negate", heads=((1, 2),)), progress=False
    )
    encoded = encoder_for(tiny_llama, get_template("history")).encode_many(examples[:2])
    batch = collate(encoded, pad_id_of(tiny_llama.tokenizer))

    def negate(z: Tensor, hook) -> Tensor:
        z = z.clone()
        z[:, :, 2] = -z[:, :, 2]
        return z

    clean = forward_nll(tiny_llama, batch)
    with tiny_llama.hooks(fwd_hooks=[("blocks.1.attn.hook_z", negate)]):
        negated = forward_nll(tiny_llama, batch)
    torch.testing.assert_close(scores.per_example[:, 1, 2], negated - clean, atol=1e-5, rtol=0)


def test_toy_method_generates_like_its_definition(toys, tiny_llama):
    prompts = ["History 1: a cat\nQuestion: suggest a pet", "Hello"]
    toy = HalfDPS(strength=0.25).build(SteeringContext(tiny_llama, heads=[(0, 1), (1, 2)]))
    weights = torch.zeros(int(tiny_llama.cfg.n_layers), int(tiny_llama.cfg.n_heads))
    weights[0, 1] = weights[1, 2] = 0.5
    same = dps(tiny_llama, weights, gamma=0.25)
    ours = generate(tiny_llama, prompts, toy, max_new_tokens=5)
    assert ours.token_ids == generate(tiny_llama, prompts, same, max_new_tokens=5).token_ids


def test_toys_run_through_the_cli(toys, tmp_path, examples_jsonl, capsys):
    run = tmp_path / "run"
    assert (
        main(
            discover_args(
                "tiny-llama",
                examples_jsonl,
                run,
                "--mode",
                "negate",
                "--k",
                "2",
                "--n-examples",
                "2",
            )
        )
        == 0
    )
    assert json.loads((run / "scores.json").read_text())["config"]["mode"] == "negate"
    out = tmp_path / "steer.jsonl"
    args = ["steer", "--model", "tiny-llama", "--heads", str(run), "--method", "half_dps", "--strength", "0.25",
            "--prompt", "Hi", "--max-new-tokens", "3", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert json.loads(out.read_text().splitlines()[0])["method"] == "half_dps"
    with pytest.raises(SystemExit):
        main(["steer", "--model", "tiny-llama", "--help"])
    assert "--strength" in capsys.readouterr().out
