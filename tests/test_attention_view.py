"""Attention views: exact profile-token marking, the heads' patterns, and offline rendering."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dps_lens.attention_view import attention_view
from dps_lens.data.encoding import encoder_for
from dps_lens.data.prompts import get_template
from dps_lens.errors import DpsLensError


def test_profile_token_mask_covers_exactly_the_history_lines(planted, examples) -> None:
    example = examples[0]
    encoder = encoder_for(planted, get_template("history"))
    encoded = encoder.encode(example)
    mask = encoded.profile_mask()
    tokenizer = planted.tokenizer
    marked = tokenizer.decode([i for i, m in zip(encoded.input_ids, mask, strict=True) if m])
    lines = "\n".join(f"History {i}: {item}" for i, item in enumerate(example.profile, 1))
    assert "".join(marked.split()) == "".join(lines.split())
    assert not any(mask[encoded.target_start :])  # no target token is marked
    no_profile = encoder_for(planted, get_template("no-profile"))
    assert not any(no_profile.encode(example).profile_mask())


def props(fragment: str, component: str) -> dict:
    call = re.search(rf"CircuitsVis\.{component}, (\{{.*?\}})\);\n", fragment)
    assert call, f"no {component} render call"
    return json.loads(call.group(1))


def test_view_carries_patterns_of_the_chosen_heads_and_inlines_the_bundle(
    planted, examples, tmp_path
) -> None:
    heads = [(1, 1), (0, 2)]
    view = attention_view(planted, examples[0], heads)
    fragment = view.fragment()
    assert "unpkg.com" not in fragment and len(fragment) > 1_000_000  # bundle inlined
    attention = torch.tensor(props(fragment, "AttentionHeads")["attention"])
    _, cache = planted.run_with_cache(
        torch.tensor([encoder_for(planted, get_template("history")).encode(examples[0]).input_ids])
    )
    torch.testing.assert_close(
        attention[0], cache["blocks.1.attn.hook_pattern"][0, 1], atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        attention[1], cache["blocks.0.attn.hook_pattern"][0, 2], atol=1e-6, rtol=0
    )
    names = props(fragment, "AttentionHeads")["attentionHeadNames"]
    assert names[0].startswith("L1H1") and "% on profile" in names[0]
    values = props(fragment, "ColoredTokens")["values"]
    assert set(values) == {0.0, 1.0}
    page = view.save(tmp_path / "view.html")
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_view_rejects_a_head_out_of_range(planted, examples) -> None:
    with pytest.raises(DpsLensError, match="head"):
        attention_view(planted, examples[0], [(0, 99)])
