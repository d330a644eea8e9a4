"""circuitsvis views of heads' attention on one example, with the profile tokens marked.

circuitsvis renders either from a CDN (``str()`` of its output) or with its JavaScript bundle
inlined; the CDN form draws nothing offline and its notebook display probes the network first.
These views always inline the bundle, so a saved file or a notebook cell draws with no network.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import circuitsvis
import torch
from circuitsvis.utils.convert_props import convert_props

from dps_lens._io import atomic_write_text
from dps_lens.data.encoding import encoder_for
from dps_lens.data.example import PreferenceExample
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.heads import Head, check_head, head_name
from dps_lens.profile_attention import profile_share
from dps_lens.scoring.head_scores import HeadScores

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase


@functools.cache
def _bundle() -> str:
    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return path.read_text(encoding="utf-8").replace("</script>", "")


@dataclass(frozen=True)
class AttentionView:
    """Rendered views (HTML with the circuitsvis bundle inlined); displays itself in Jupyter."""

    components: tuple[tuple[str, dict[str, Any]], ...]
    title: str

    def fragment(self) -> str:
        """An HTML fragment: one ``div`` per component and one inline script that draws them."""
        ids = [f"dps-lens-view-{uuid4().hex[:12]}" for _ in self.components]
        divs = "\n".join(f'<div id="{i}" style="margin: 12px 0;"></div>' for i in ids)
        calls = "\n".join(
            f'CircuitsVis.render("{i}", CircuitsVis.{name}, {convert_props(props)});'
            for i, (name, props) in zip(ids, self.components, strict=True)
        )
        return (
            f"<h3>{html.escape(self.title)}</h3>\n{divs}\n<script>\n{_bundle()}\n{calls}\n</script>"
        )

    def _repr_html_(self) -> str:
        return self.fragment()

    def save(self, path: str | Path) -> Path:
        """A standalone HTML page (no network needed), written atomically."""
        page = (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title></head>"
            f"<body style='font-family: Helvetica, Arial, sans-serif'>{self.fragment()}</body></html>"
        )
        return atomic_write_text(path, page)


def _token_strings(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    return tokenizer.batch_decode([[i] for i in ids])


@torch.no_grad()
def attention_view(
    model: TransformerBridge,
    example: PreferenceExample,
    heads: Sequence[Head],
    template: PromptTemplate | str = "history",
    max_length: int | None = None,
    scores: HeadScores | None = None,
) -> AttentionView:
    """Attention patterns of ``heads`` on ``example`` (prompt + gold target).

    The first view colours the profile tokens; the second shows each head's pattern. A head's
    name reads ``L1H3 · PCS 0.42 · 63% on profile``: its score (when ``scores`` are given) and the
    mean share of attention that the target-predicting positions put on profile tokens.
    """
    template = get_template(template) if isinstance(template, str) else template
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    for layer, head in heads:
        check_head(layer, head, n_layers, n_heads)
    encoder = encoder_for(model, template, max_length)
    encoded = encoder.encode(example)
    profile = torch.tensor(encoded.profile_mask())
    tokens = torch.tensor([encoded.input_ids], device=model.cfg.device)
    layers = sorted({layer for layer, _ in heads})
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    patterns = torch.stack(
        [cache[f"blocks.{layer}.attn.hook_pattern"][0, head] for layer, head in heads]
    ).float().cpu()  # fmt: skip
    answer = torch.zeros(len(encoded.input_ids), dtype=torch.bool)
    answer[encoded.target_start - 1 : len(encoded.input_ids) - 1] = True
    share = profile_share(patterns[None], answer[None], profile[None])[0]
    labels = []
    for (layer, head), fraction in zip(heads, share.tolist(), strict=True):
        pcs = f" · PCS {float(scores.mean[layer, head]):.3f}" if scores is not None else ""
        labels.append(f"{head_name((layer, head))}{pcs} · {100 * fraction:.0f}% on profile")
    strings = _token_strings(model.tokenizer, encoded.input_ids)
    components = (
        ("ColoredTokens", {"tokens": strings, "values": profile.float().tolist(), "maxValue": 1.0}),
        (
            "AttentionHeads",
            {
                "attention": patterns.tolist(),
                "tokens": strings,
                "attentionHeadNames": labels,
                "maskUpperTri": True,
            },
        ),
    )
    title = f"Attention of {len(heads)} heads · user {example.user_id} · profile tokens in blue"
    return AttentionView(components, title)
